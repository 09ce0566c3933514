struct S;

impl S {
    #[turbolift::distribute]
    fn f(&self) -> u8 {
        1
    }
}

fn main() {}
