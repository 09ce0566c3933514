//! Every shape here must expand, compile, and run in-process.

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[turbolift::distribute(timeout = "5s")]
async fn greet(name: String) -> String {
    format!("hello, {name}")
}

#[turbolift::distribute]
fn parse(text: String) -> Result<u8, String> {
    text.parse::<u8>().map_err(|e| e.to_string())
}

#[turbolift::distribute]
fn nothing() {}

/// Appends `n` zeros.
///
/// Doc comments stay on the generated `async fn`.
#[turbolift::distribute]
pub(crate) fn pad(mut bytes: Vec<u8>, n: usize) -> Vec<u8> {
    bytes.resize(bytes.len() + n, 0);
    bytes
}

// After the macro's attribute, so that the macro sees it and copies it onto what it emits.
#[turbolift::distribute]
#[cfg(all())]
fn configured(x: i32) -> i32 {
    -x
}

// A function whose name comes from a `macro_rules!` invocation.
macro_rules! adder {
    ($name:ident, $n:expr) => {
        #[turbolift::distribute]
        fn $name(x: u64) -> u64 {
            x + $n
        }
    };
}

adder!(plus_two, 2);

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(square(7).await.unwrap(), 49);
        assert_eq!(
            greet("turbolift".to_owned()).await.unwrap(),
            "hello, turbolift"
        );
        assert_eq!(parse("42".to_owned()).await.unwrap(), Ok(42));
        assert!(parse("forty-two".to_owned()).await.unwrap().is_err());
        nothing().await.unwrap();
        assert_eq!(pad(vec![1, 2], 3).await.unwrap(), vec![1, 2, 0, 0, 0]);
        assert_eq!(configured(5).await.unwrap(), -5);
        assert_eq!(plus_two(40).await.unwrap(), 42);
        assert_eq!(plus_two_batch([1, 2]).await.unwrap(), vec![3, 4]);
    });
}
