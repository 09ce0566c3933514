struct S;

impl S {
    #[turbolift::distribute(colour = "red")]
    const unsafe fn f<T>(&self, s: &str, (a, b): (u8, u8), t: impl Copy) -> impl Copy {
        (a, b)
    }
}

fn main() {}
