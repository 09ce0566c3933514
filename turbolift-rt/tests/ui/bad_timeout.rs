#[turbolift::distribute(timeout = "soon")]
fn one() -> u8 {
    1
}

fn main() {}
