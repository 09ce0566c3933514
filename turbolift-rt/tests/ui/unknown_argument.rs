#[turbolift::distribute(colour = "red")]
fn one() -> u8 {
    1
}

fn main() {}
