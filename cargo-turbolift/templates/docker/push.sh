#!/bin/sh
# Pushes the images of `{{package}}` to their registry and makes every multi-arch
# reference a manifest list there. Written by `cargo turbolift build`; every build
# writes it again. For a registry served over plain HTTP, run it with
# MANIFEST_FLAGS=--insecure.
set -eu
{{commands}}
