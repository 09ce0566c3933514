fn outer() {
    #[turbolift::distribute]
    fn inner(x: u8) -> u8 {
        x + 1
    }
}

fn main() {
    outer();
}
