#[turbolift::distribute]
fn shout(s: &str) -> String {
    s.to_uppercase()
}

fn main() {}
