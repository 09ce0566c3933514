struct NotSerde;

#[turbolift::distribute]
fn consume(value: NotSerde) -> u8 {
    let _ = value;
    1
}

fn main() {}
