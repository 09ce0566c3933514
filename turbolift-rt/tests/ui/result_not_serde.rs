struct NotSerde;

#[turbolift::distribute]
fn produce() -> NotSerde {
    NotSerde
}

fn main() {}
