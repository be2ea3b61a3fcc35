use mp_runtime::process_fn;

#[process_fn]
#[allow(
    clippy::too_many_arguments,
    reason = "twelve is the most #[process_fn] takes"
)]
fn sum(
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: i8,
    f: i16,
    g: i32,
    h: i64,
    i: usize,
    j: bool,
    k: char,
    l: String,
) -> String {
    let numbers = u64::from(a) + u64::from(b) + u64::from(c) + d + i as u64;
    let signed = i64::from(e) + i64::from(f) + i64::from(g) + h;
    format!("{numbers} {signed} {j} {k}{l}")
}

fn main() {
    let text = sum(1, 2, 3, 4, -1, -2, -3, -4, 5, true, 'x', "y".to_string());
    assert_eq!(text, "15 -10 true xy");
}
