# The image of the program of package `{{package}}`, run as a Kubernetes Job by
# `cargo turbolift run --platform kubernetes`. Generated; every build writes it again.
#
# A static binary in an empty root, like the service images.
FROM scratch
COPY program /program
USER 65532
LABEL turbolift.package="{{package}}" turbolift.program="true"
ENTRYPOINT ["/program"]
