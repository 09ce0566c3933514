#[turbolift::distribute]
fn identity<T>(t: T) -> T {
    t
}

fn main() {}
