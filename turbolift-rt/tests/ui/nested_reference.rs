#[turbolift::distribute]
fn join(words: Vec<&'static str>) -> String {
    words.join(" ")
}

fn main() {}
