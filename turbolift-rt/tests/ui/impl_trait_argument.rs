#[turbolift::distribute]
fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.sum()
}

fn main() {}
