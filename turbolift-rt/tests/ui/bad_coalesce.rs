#[turbolift::distribute(coalesce = "no")]
fn one() -> u8 {
    1
}

fn main() {}
