//! Untrusted images decoded in a sandboxed pool (README: Sandboxing).
//!
//! Image decoders are large parsers of hostile input. Here each file is decoded, and its
//! thumbnail written, by a worker that may read only the input directory and write only the
//! output directory: a decoder taken over by a crafted file could read no secret, write
//! nowhere else, reach no network and run no program. The memory limit and the time limit
//! bound what the sandbox does not (a decompression bomb, a decoder that loops), and a crash
//! fails only its own file. Checks its own output: `cargo run -p sandbox-image`.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use mp_runtime::{Pool, Sandbox, process_fn};

/// Decodes `input` (any format the build reads, whatever its name says) and writes a
/// thumbnail of at most 32x32 to `output`; the original's size, or why not.
#[process_fn]
fn thumbnail(input: String, output: String) -> Result<(u32, u32), String> {
    let image = image::ImageReader::open(&input)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?;
    image
        .thumbnail(32, 32)
        .save_with_format(&output, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok((image.width(), image.height()))
}

/// What a decoder taken over by a crafted file would try: what got through.
#[process_fn]
fn snoop(secret: String, port: u16) -> Vec<String> {
    let mut got = Vec::new();
    if std::fs::read(&secret).is_ok() {
        got.push("read the secret".to_string());
    }
    let beside = Path::new(&secret).with_file_name("planted");
    if std::fs::write(beside, "x").is_ok() {
        got.push("planted a file".to_string());
    }
    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
        got.push("connected".to_string());
    }
    if std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("true")
        .status()
        .is_ok()
    {
        got.push("ran a shell".to_string());
    }
    got
}

fn main() {
    let root = std::env::temp_dir().join(format!("mp-sandbox-image-{}", std::process::id()));
    let (inputs, outputs, private) = (root.join("in"), root.join("out"), root.join("private"));
    for dir in [&inputs, &outputs, &private] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let secret = private.join("id_ed25519");
    std::fs::write(&secret, "not for workers").unwrap();
    // The untrusted files: a good PNG, one cut short, and text pretending to be one.
    let good = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 0]));
    good.save(inputs.join("good.png")).unwrap();
    let bytes = std::fs::read(inputs.join("good.png")).unwrap();
    std::fs::write(inputs.join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(inputs.join("fake.png"), "<html>not an image</html>").unwrap();

    let pool = Pool::builder()
        .processes(2)
        .memory_limit(512 << 20)
        .task_timeout(Duration::from_secs(60))
        .sandbox(Sandbox::new().read_only(&inputs).read_write(&outputs))
        .build()
        .unwrap();
    println!("sandbox: {}", pool.sandbox_report().unwrap());

    let names = ["good.png", "cut.png", "fake.png"];
    let jobs = names.map(|name| (path(&inputs.join(name)), path(&outputs.join(name))));
    let thumbnails = pool.starmap(thumbnail, jobs).unwrap();
    for (name, result) in names.iter().zip(&thumbnails) {
        println!("{name}: {result:?}");
    }
    assert_eq!(thumbnails[0], Ok((64, 48)));
    assert!(thumbnails[1].is_err() && thumbnails[2].is_err());
    let small = image::open(outputs.join("good.png")).unwrap();
    assert_eq!((small.width(), small.height()), (32, 24));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = pool.apply(snoop, (path(&secret), port)).unwrap();
    println!("a hijacked decoder got through: {got:?}");
    assert!(got.is_empty(), "{got:?}");

    std::fs::remove_dir_all(&root).unwrap();
    println!("ok: 1 thumbnail, 2 files refused, nothing got out");
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
