//! A child holds only the descriptors mp gives it: standard input (/dev/null), output and
//! error, and its channel to the parent. Nothing else of the parent's leaks in.

use std::os::fd::AsRawFd;

use mp_runtime::{process_fn, spawn};

/// The child's open descriptors and what each points to.
#[process_fn]
fn open_descriptors() -> Vec<(i32, String)> {
    let mut open: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        // The directory being listed has a descriptor of its own while it is read.
        .filter(|(_, target)| !target.starts_with("/proc/"))
        .collect();
    open.sort();
    open
}

/// The body of [`a_child_holds_only_its_own_descriptors`], in a process of its own.
#[process_fn]
fn a_child_holds_only_its_own_descriptors_alone() {
    // Things the parent has open must not reach the child.
    let file = std::fs::File::open("Cargo.toml").unwrap();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let open = spawn!(open_descriptors).unwrap().join().unwrap();
    let fds: Vec<i32> = open.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(&fds[..3], &[0, 1, 2], "{open:?}");
    assert_eq!(open[0].1, "/dev/null", "{open:?}");
    let rest = &open[3..];
    assert!(
        rest.iter().all(|(_, target)| target.starts_with("socket:")),
        "only the channel may be open beyond 0-2: {open:?}"
    );
    assert!(
        rest.len() <= 2,
        "the channel and its reader's copy at most: {open:?}"
    );
    // Compare identities, not numbers: the child's channel may reuse a number the parent uses.
    use std::os::unix::fs::MetadataExt;
    let socket_inode = |s: &std::os::unix::net::UnixStream| {
        std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
            .unwrap()
            .ino()
    };
    for inode in [socket_inode(&a), socket_inode(&b)] {
        let name = format!("socket:[{inode}]");
        assert!(
            !rest.iter().any(|(_, target)| *target == name),
            "{name} leaked: {open:?}"
        );
    }
    drop(file);
    assert!(
        !open
            .iter()
            .any(|(_, target)| target.ends_with("Cargo.toml")),
        "{open:?}"
    );
}

/// Runs [`a_child_holds_only_its_own_descriptors_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_child_holds_only_its_own_descriptors() {
    crate::in_child(a_child_holds_only_its_own_descriptors_alone);
}
