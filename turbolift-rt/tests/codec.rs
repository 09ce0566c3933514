//! Round trips through `turbolift::wire`, the encoding of arguments and results, and the
//! bodies it must refuse.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use serde_bytes::ByteBuf;
use turbolift::serde::de::DeserializeOwned;
use turbolift::serde::{Deserialize, Serialize, Serializer};
use turbolift::wire::{decode, encode};

/// Encodes `value`, checks that it decodes back to an equal value, and returns the bytes.
fn round_trip<T>(value: &T) -> Vec<u8>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value).expect("encodes");
    let back: T = decode(&bytes).expect("decodes");
    assert_eq!(&back, value, "round trip through {bytes:?}");
    bytes
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Order {
    id: u64,
    customer: String,
    lines: Vec<Line>,
    note: Option<String>,
    location: Point,
    paid: bool,
    delta: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Line {
    sku: String,
    quantity: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Meters(f32);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Pair(u8, String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
enum Shape {
    Empty,
    Circle(f64),
    Segment(Point, Point),
    Rect { width: u32, height: u32 },
    Group(Vec<Shape>),
}

fn order() -> Order {
    Order {
        id: 9_000_000_001,
        customer: "Zoë Ångström".to_owned(),
        lines: vec![
            Line {
                sku: "A-1".to_owned(),
                quantity: 3,
            },
            Line {
                sku: "B-22".to_owned(),
                quantity: 65_535,
            },
        ],
        note: Some("leave at the door".to_owned()),
        location: Point { x: 1.5, y: -2.25 },
        paid: true,
        delta: -7,
    }
}

/// A deterministic pseudo-random byte stream (xorshift64*), so that large payloads are
/// not all zeros or a repeating pattern.
fn pseudo_random_bytes(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let take = word.len().min(len - out.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Round trips.

#[test]
fn structs_round_trip() {
    round_trip(&order());
    round_trip(&Order {
        lines: Vec::new(),
        note: None,
        customer: String::new(),
        ..order()
    });
    round_trip(&Point {
        x: f64::MAX,
        y: f64::MIN_POSITIVE,
    });
    round_trip(&Meters(1.25));
    round_trip(&Pair(255, "two".to_owned()));
    // A unit struct has no bytes at all.
    assert!(round_trip(&Unit).is_empty());
}

#[test]
fn enum_variants_round_trip() {
    let shapes = [
        Shape::Empty,
        Shape::Circle(0.5),
        Shape::Segment(Point { x: 0.0, y: 0.0 }, Point { x: 3.0, y: 4.0 }),
        Shape::Rect {
            width: 640,
            height: 480,
        },
        Shape::Group(vec![
            Shape::Empty,
            Shape::Group(vec![Shape::Circle(1.0)]),
            Shape::Rect {
                width: u32::MAX,
                height: 0,
            },
        ]),
    ];
    for shape in &shapes {
        round_trip(shape);
    }
    // The whole list too, and the variant index is the first byte of each encoding.
    round_trip(&shapes.to_vec());
    assert_eq!(encode(&Shape::Empty).unwrap(), [0]);
    assert_eq!(encode(&Shape::Circle(0.0)).unwrap()[0], 1);
    assert_eq!(
        encode(&Shape::Rect {
            width: 1,
            height: 2
        })
        .unwrap(),
        [3, 1, 2]
    );
    // Standard enums.
    round_trip(&Some(Shape::Empty));
    round_trip(&None::<Shape>);
}

#[test]
fn nested_collections_round_trip() {
    let mut first = HashMap::new();
    first.insert("empty".to_owned(), Vec::new());
    first.insert(
        "mixed".to_owned(),
        vec![Some(1), None, Some(-1), Some(i64::MIN)],
    );
    first.insert(String::new(), vec![None, None]);
    let mut second = HashMap::new();
    second.insert("max".to_owned(), vec![Some(i64::MAX)]);
    let nested: Vec<HashMap<String, Vec<Option<i64>>>> = vec![first, HashMap::new(), second];
    round_trip(&nested);

    let mut tree: BTreeMap<String, (u8, i128, Vec<String>)> = BTreeMap::new();
    tree.insert("a".to_owned(), (1, i128::MIN, vec!["x".to_owned()]));
    tree.insert("b".to_owned(), (2, i128::MAX, Vec::new()));
    tree.insert("ü".to_owned(), (3, 0, vec![String::new(), "🦀".to_owned()]));
    round_trip(&tree);
    // A BTreeMap's order is part of its value: the encoding is deterministic.
    assert_eq!(encode(&tree).unwrap(), encode(&tree.clone()).unwrap());

    let mut by_number: BTreeMap<u32, Vec<(bool, char)>> = BTreeMap::new();
    by_number.insert(0, vec![(true, 'a'), (false, 'ß')]);
    by_number.insert(u32::MAX, Vec::new());
    round_trip(&by_number);

    type Tuples = ((u8, (i16, u128)), [u16; 3], (String, Option<(bool,)>));
    let tuples: Tuples = (
        (7, (-300, u128::MAX)),
        [1, 300, 65_535],
        ("tuple".to_owned(), Some((true,))),
    );
    round_trip(&tuples);
    round_trip(&vec![(1u8, 'x'), (2, 'y')]);
    round_trip(&Vec::<Vec<Vec<u8>>>::from([vec![], vec![vec![], vec![0]]]));
}

#[test]
fn results_round_trip() {
    let ok: Result<u8, String> = Ok(200);
    let err: Result<u8, String> = Err("no such thing: ∅".to_owned());
    assert_eq!(round_trip(&ok), [0, 200]);
    let err_bytes = round_trip(&err);
    assert_eq!(err_bytes[0], 1);
    // `Ok` and `Err` stay distinct even when both carry the same kind of value.
    let same: [Result<String, String>; 2] = [Ok("x".to_owned()), Err("x".to_owned())];
    assert_ne!(encode(&same[0]).unwrap(), encode(&same[1]).unwrap());
    for r in &same {
        round_trip(r);
    }
}

#[test]
fn unit_round_trips_as_an_empty_body() {
    assert!(round_trip(&()).is_empty());
    // The argument tuple of a function without arguments is `()` too.
    let no_args: () = decode(&[]).unwrap();
    assert_eq!(encode(&no_args).unwrap(), Vec::<u8>::new());
    round_trip(&vec![(), (), ()]);
    round_trip(&Some(()));
}

#[test]
fn argument_tuples_round_trip() {
    // What the macro sends for `fn f(a: u64, b: String, c: Vec<u8>)`.
    let args: (u64, String, Vec<u8>) = (300, "hi".to_owned(), vec![1, 2]);
    let bytes = round_trip(&args);
    // Pin the format: varint 300, then length-prefixed string and bytes.
    assert_eq!(bytes, [0xac, 0x02, 2, b'h', b'i', 2, 1, 2]);
    round_trip(&(u64::MAX, String::new(), Vec::<u8>::new()));
    // One argument travels as a 1-tuple.
    round_trip(&(order(),));
    assert_eq!(encode(&(5u8,)).unwrap(), encode(&5u8).unwrap());
}

#[test]
fn large_byte_vectors_round_trip() {
    const LEN: usize = 10 * 1024 * 1024;
    let data = pseudo_random_bytes(LEN, 0x9e37_79b9_7f4a_7c15);
    assert_eq!(data.len(), LEN);
    // Not a constant or trivially repeating buffer.
    assert_ne!(data[..4096], data[4096..8192]);
    assert!(data.contains(&0) && data.contains(&0xff));

    let bytes = encode(&data).unwrap();
    // A varint length (10 MiB takes 4 bytes), then the bytes as they are.
    assert_eq!(bytes.len(), LEN + 4);
    assert_eq!(&bytes[4..], &data[..]);
    let back: Vec<u8> = decode(&bytes).unwrap();
    assert!(back == data, "10 MiB Vec<u8> changed in the round trip");

    let buf = ByteBuf::from(data.clone());
    let buf_bytes = encode(&buf).unwrap();
    // serde_bytes takes the same wire form as a Vec<u8>; only the (de)serializer path differs.
    assert!(buf_bytes == bytes, "ByteBuf and Vec<u8> encode differently");
    let buf_back: ByteBuf = decode(&buf_bytes).unwrap();
    assert!(
        buf_back.into_vec() == data,
        "10 MiB ByteBuf changed in the round trip"
    );

    // And in an argument tuple, next to other values.
    let args = (7u64, "blob".to_owned(), ByteBuf::from(data));
    let encoded = encode(&args).unwrap();
    let (n, name, blob): (u64, String, ByteBuf) = decode(&encoded).unwrap();
    assert_eq!((n, name.as_str()), (7, "blob"));
    assert!(blob == args.2, "ByteBuf argument changed in the round trip");
}

#[test]
fn float_edge_values_round_trip_bit_for_bit() {
    let values = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        // A NaN with a payload.
        f64::from_bits(0x7ff8_0000_0000_0001),
        // A signalling NaN bit pattern.
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::MIN_POSITIVE,
        // The smallest subnormal.
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        std::f64::consts::PI,
    ];
    for value in values {
        let back: f64 = decode(&encode(&value).unwrap()).unwrap();
        assert_eq!(back.to_bits(), value.to_bits(), "{value:?}");
    }
    let back: f64 = decode(&encode(&f64::NAN).unwrap()).unwrap();
    assert!(back.is_nan());
    let back: f64 = decode(&encode(&-0.0f64).unwrap()).unwrap();
    assert!(back == 0.0 && back.is_sign_negative());
    let back: f64 = decode(&encode(&f64::NEG_INFINITY).unwrap()).unwrap();
    assert!(back.is_infinite() && back < 0.0);

    for value in [
        f32::NAN,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ] {
        let back: f32 = decode(&encode(&value).unwrap()).unwrap();
        assert_eq!(back.to_bits(), value.to_bits(), "{value:?}");
    }
    // Inside a struct and a collection too.
    let points = vec![
        Point {
            x: f64::NAN,
            y: -0.0,
        },
        Point {
            x: f64::INFINITY,
            y: f64::NEG_INFINITY,
        },
    ];
    let back: Vec<Point> = decode(&encode(&points).unwrap()).unwrap();
    let bits = |ps: &[Point]| -> Vec<(u64, u64)> {
        ps.iter().map(|p| (p.x.to_bits(), p.y.to_bits())).collect()
    };
    assert_eq!(bits(&back), bits(&points));
}

#[test]
fn chars_and_unicode_strings_round_trip() {
    for c in [
        'a',
        '\0',
        '\n',
        'é',
        'ß',
        '€',
        '日',
        '🦀',
        '\u{10ffff}',
        '\u{feff}',
    ] {
        round_trip(&c);
    }
    for s in [
        "",
        "plain ascii",
        "héllo wörld",
        "日本語のテキスト",
        "emoji 🦀🚀 and a family 👨‍👩‍👧",
        "combining: e\u{301} vs é",
        "right-to-left: שלום",
        "nul \0 inside",
    ] {
        let bytes = round_trip(&s.to_owned());
        // A length prefix, then the UTF-8 bytes as they are.
        assert!(bytes.ends_with(s.as_bytes()), "{s:?}");
    }
    round_trip(&"ü".repeat(100_000));
    round_trip(&vec!['🦀'; 3]);
}

// ---------------------------------------------------------------------------------------
// Bodies that must be refused.

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&order()).unwrap();
    bytes.push(0);
    let err = decode::<Order>(&bytes).unwrap_err();
    assert!(err.to_string().contains("unexpected byte"), "{err}");
    assert!(err.to_string().starts_with("1 "), "{err}");

    bytes.extend_from_slice(&[1, 2]);
    let err = decode::<Order>(&bytes).unwrap_err();
    assert!(err.to_string().contains("3 unexpected byte"), "{err}");

    // Even after a value that has no bytes of its own.
    let err = decode::<()>(&[0]).unwrap_err();
    assert!(err.to_string().contains("unexpected byte"), "{err}");
    // And after an argument tuple.
    let mut args = encode(&(1u64, "a".to_owned(), vec![9u8])).unwrap();
    args.push(0xff);
    let err = decode::<(u64, String, Vec<u8>)>(&args).unwrap_err();
    assert!(err.to_string().contains("unexpected byte"), "{err}");
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = encode(&order()).unwrap();
    assert!(
        bytes.len() > 30,
        "the test needs a long encoding: {bytes:?}"
    );
    for len in 0..bytes.len() {
        let result = decode::<Order>(&bytes[..len]);
        assert!(
            result.is_err(),
            "a prefix of {len}/{} bytes decoded as {result:?}",
            bytes.len()
        );
    }
    // The complete encoding still decodes, so the loop above tested the prefixes only.
    assert_eq!(decode::<Order>(&bytes).unwrap(), order());

    // The same for an enum and an argument tuple with a large payload.
    let shape = Shape::Group(vec![
        Shape::Rect {
            width: 100_000,
            height: 3,
        },
        Shape::Circle(2.0),
    ]);
    let bytes = encode(&shape).unwrap();
    for len in 0..bytes.len() {
        assert!(decode::<Shape>(&bytes[..len]).is_err(), "prefix of {len}");
    }
    let args = (1u64, "x".to_owned(), vec![7u8; 1000]);
    let bytes = encode(&args).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode::<(u64, String, Vec<u8>)>(&bytes[..len]).is_err(),
            "prefix of {len}"
        );
    }
    // A truncated body says that it ended too soon.
    let order_bytes = encode(&order()).unwrap();
    let err = decode::<Order>(&order_bytes[..order_bytes.len() - 1]).unwrap_err();
    assert!(err.to_string().contains("end of buffer"), "{err}");
}

#[test]
fn decoding_as_the_wrong_type_is_rejected_where_postcard_can_tell() {
    // An order is not a point: a point takes 16 bytes and the order's encoding is longer.
    let order_bytes = encode(&order()).unwrap();
    assert!(decode::<Point>(&order_bytes).is_err());
    assert!(decode::<Shape>(&order_bytes).is_err());
    assert!(decode::<Result<u8, String>>(&order_bytes).is_err());
    // Too short for the type asked for.
    assert!(decode::<Order>(&encode(&Point { x: 1.0, y: 2.0 }).unwrap()).is_err());
    assert!(decode::<(u64, String, Vec<u8>)>(&encode(&5u64).unwrap()).is_err());
    // Values with no valid meaning in the target type.
    let err = decode::<bool>(&encode(&2u8).unwrap()).unwrap_err();
    assert!(err.to_string().contains("bool"), "{err}");
    assert!(decode::<Option<u8>>(&[2, 0]).is_err());
    assert!(decode::<Result<u8, String>>(&[2, 0]).is_err());
    // Variant 9 does not exist in `Shape`.
    assert!(decode::<Shape>(&[9]).is_err());
    // Bytes that are not UTF-8 are not a `String` or a `char`.
    let not_utf8 = encode(&vec![0xffu8, 0xfe]).unwrap();
    let err = decode::<String>(&not_utf8).unwrap_err();
    assert!(err.to_string().contains("utf-8"), "{err}");
    assert!(decode::<char>(&not_utf8).is_err());
    // Two characters, or none, are not one `char`.
    assert!(decode::<char>(&encode(&"ab".to_owned()).unwrap()).is_err());
    assert!(decode::<char>(&encode(&String::new()).unwrap()).is_err());
    // A varint that does not fit.
    assert!(decode::<u8>(&encode(&300u16).unwrap()).is_err());
    assert!(decode::<u16>(&encode(&70_000u32).unwrap()).is_err());
    assert!(decode::<u32>(&encode(&u64::MAX).unwrap()).is_err());
}

#[test]
fn decoding_as_the_wrong_type_where_postcard_cannot_tell() {
    // postcard carries no type information: where two types share a wire form, a body
    // decodes as either. The signature hash checked on each call is what catches a
    // caller and a service that disagree about a function's types; these tests pin the
    // ambiguities so that a change of format is noticed.

    // Field names are not sent: a struct is its fields in order, like a tuple.
    let point = decode::<(f64, f64)>(&encode(&Point { x: 1.0, y: 2.0 }).unwrap()).unwrap();
    assert_eq!(point, (1.0, 2.0));
    // A `String` is length-prefixed UTF-8, which is also a valid `Vec<u8>`.
    let bytes = decode::<Vec<u8>>(&encode(&"hé".to_owned()).unwrap()).unwrap();
    assert_eq!(bytes, "hé".as_bytes());
    // Unsigned integers of different widths share varints while the value fits.
    assert_eq!(decode::<u64>(&encode(&300u16).unwrap()).unwrap(), 300);
    // Signed integers are zig-zag varints: read as unsigned, the value changes silently.
    assert_eq!(decode::<u32>(&encode(&-1i32).unwrap()).unwrap(), 1);
    // An enum is sent by variant index, not name.
    assert_eq!(
        decode::<Option<u8>>(&encode(&Shape::Circle(0.0)).unwrap()[..2]).unwrap(),
        Some(0)
    );
    // A `Result`'s tag byte reads as a `bool` just as well.
    assert_eq!(
        decode::<(bool, u8)>(&encode(&Ok::<u8, String>(7)).unwrap()).unwrap(),
        (false, 7)
    );
}

#[test]
fn an_empty_body_decodes_only_as_a_value_without_bytes() {
    assert!(decode::<()>(&[]).is_ok());
    // Every type that has bytes to read refuses an empty body.
    assert!(decode::<u8>(&[]).is_err());
    assert!(decode::<u64>(&[]).is_err());
    assert!(decode::<bool>(&[]).is_err());
    assert!(decode::<f64>(&[]).is_err());
    assert!(decode::<char>(&[]).is_err());
    assert!(decode::<String>(&[]).is_err());
    assert!(decode::<Vec<u8>>(&[]).is_err());
    assert!(decode::<ByteBuf>(&[]).is_err());
    assert!(decode::<Option<u8>>(&[]).is_err());
    assert!(decode::<Option<()>>(&[]).is_err());
    assert!(decode::<Result<(), ()>>(&[]).is_err());
    assert!(decode::<(u8,)>(&[]).is_err());
    assert!(decode::<(u64, String, Vec<u8>)>(&[]).is_err());
    assert!(decode::<Point>(&[]).is_err());
    assert!(decode::<Order>(&[]).is_err());
    assert!(decode::<Shape>(&[]).is_err());
    let err = decode::<u64>(&[]).unwrap_err();
    assert!(err.to_string().contains("end of buffer"), "{err}");
    // postcard cannot tell `()` from the other types whose encoding is empty: a unit
    // struct, an empty array, a tuple of units. They are `()` in all but name.
    assert_eq!(decode::<Unit>(&[]).unwrap(), Unit);
    assert_eq!(decode::<[u8; 0]>(&[]).unwrap(), [0u8; 0]);
    assert_eq!(decode::<((), ())>(&[]).unwrap(), ((), ()));
}

/// A value whose sequence length is unknown up front, which postcard cannot encode.
struct Unsized;

impl Serialize for Unsized {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((0..3u8).filter(|b| b % 2 == 0))
    }
}

#[test]
fn encoding_failures_are_errors() {
    let err = encode(&Unsized).unwrap_err();
    assert!(err.to_string().contains("length"), "{err}");
}
