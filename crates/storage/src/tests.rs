use std::fs;
use std::io::Write as _;
use std::os::unix::fs::symlink;

use super::*;

fn dir() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = Dir::create(&tmp.path().join("out")).expect("dir");
    (tmp, dir)
}

#[test]
fn publishes_once_accepts_identical_refuses_different() {
    let (_tmp, dir) = dir();
    assert_eq!(dir.publish("a.txt", b"one").expect("put"), PutOutcome::Written);
    assert_eq!(dir.publish("a.txt", b"one").expect("put"), PutOutcome::AlreadyIdentical);
    assert!(matches!(dir.publish("a.txt", b"two"), Err(StorageError::Conflict { .. })));
    assert_eq!(dir.read("a.txt").expect("read").as_deref(), Some(&b"one"[..]));
    assert_eq!(dir.read("b.txt").expect("read"), None);
    assert_eq!(dir.entries().expect("entries"), [("a.txt".to_owned(), "regular file")], "no temporary file left");
}

#[test]
fn a_planted_symlink_is_neither_followed_nor_published() {
    let (tmp, dir) = dir();
    let victim = tmp.path().join("victim.txt");
    fs::write(&victim, b"precious").expect("victim");
    symlink(&victim, dir.path().join("a.txt")).expect("symlink");
    let err = dir.publish("a.txt", b"output").expect_err("a link under the name");
    assert_eq!(
        err.to_string(),
        format!("{} is a symbolic link, not a regular file: refusing to use it", dir.path().join("a.txt").display())
    );
    assert!(dir.read("a.txt").is_err(), "reads do not follow it either");
    symlink(&victim, dir.path().join("state.bin")).expect("symlink");
    dir.replace("state.bin", b"state").expect("replace swaps the link itself");
    assert_eq!(dir.read("state.bin").expect("read").as_deref(), Some(&b"state"[..]));
    assert_eq!(fs::read(&victim).expect("victim"), b"precious", "the file outside was never written");
}

#[test]
fn a_fifo_under_a_name_is_an_error_not_a_hang() {
    let (_tmp, dir) = dir();
    let fifo = dir.path().join("f.txt");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let err = dir.read("f.txt").expect_err("a FIFO");
    assert!(err.to_string().ends_with("f.txt is a FIFO, not a regular file: refusing to use it"), "{err}");
    assert!(dir.publish("f.txt", b"x").is_err());
}

#[test]
fn names_must_be_plain_and_subdirectories_real() {
    let (tmp, dir) = dir();
    for bad in ["", "../x", "a/b", ".hidden", ".clearhouse-x.tmp"] {
        assert!(matches!(dir.publish(bad, b"x"), Err(StorageError::BadName { .. })), "{bad:?}");
        assert!(matches!(dir.read(bad), Err(StorageError::BadName { .. })), "{bad:?}");
    }
    symlink(tmp.path(), dir.path().join("parts")).expect("symlink");
    let err = dir.sub("parts").expect_err("a link as a subdirectory");
    assert!(err.to_string().contains("is a symbolic link, not a regular directory"), "{err}");
    dir.sub("p0").expect("new").replace("checkpoint.bin", b"c").expect("write");
    assert_eq!(dir.sub("p0").expect("again").read("checkpoint.bin").expect("read").as_deref(), Some(&b"c"[..]));
}

#[test]
fn temporary_names_are_unpredictable_and_leftovers_are_removed() {
    let (_tmp, dir) = dir();
    let a = OsFs.write_new(dir.path(), TEMP_PREFIX, b"1").expect("temp");
    let b = OsFs.write_new(dir.path(), TEMP_PREFIX, b"2").expect("temp");
    let name = |t: &Path| t.file_name().expect("name").to_string_lossy().into_owned();
    assert_ne!(name(&a), name(&b));
    assert!(is_temp_name(&name(&a)) && name(&a).len() == TEMP_PREFIX.len() + 16 + ".tmp".len(), "{}", name(&a));
    dir.publish("kept.txt", b"k").expect("put");
    assert_eq!(dir.remove_temps(Duration::from_secs(3600)).expect("young ones stay"), 0);
    assert_eq!(dir.remove_temps(Duration::ZERO).expect("remove"), 2);
    assert_eq!(dir.entries().expect("entries"), [("kept.txt".to_owned(), "regular file")]);
}

#[test]
fn replace_replaces_atomically() {
    let (_tmp, dir) = dir();
    dir.replace("s.json", b"1").expect("first");
    dir.replace("s.json", b"2").expect("second");
    assert_eq!(dir.read("s.json").expect("read").as_deref(), Some(&b"2"[..]));
    assert_eq!(dir.entries().expect("entries").len(), 1);
}

#[test]
fn remove_removes_a_file_or_a_link_itself_and_says_whether_it_was_there() {
    let (tmp, dir) = dir();
    dir.replace("a.bin", b"part").expect("write");
    assert!(dir.remove("a.bin").expect("remove"));
    assert_eq!(dir.entries().expect("entries"), [], "no temporary file left either");
    assert_eq!(dir.read("a.bin").expect("read"), None);
    assert!(!dir.remove("a.bin").expect("remove again"), "already gone");
    let victim = tmp.path().join("victim.txt");
    fs::write(&victim, b"precious").expect("victim");
    symlink(&victim, dir.path().join("b.bin")).expect("symlink");
    assert!(dir.remove("b.bin").expect("remove the link"));
    assert_eq!(fs::read(&victim).expect("victim"), b"precious", "the file it pointed to is untouched");
    assert!(matches!(dir.remove("../victim.txt"), Err(StorageError::BadName { .. })));
}

/// The operating system's file system, counting directory fsyncs.
#[derive(Debug, Default)]
struct CountingFs(std::sync::atomic::AtomicUsize);

impl Fs for CountingFs {
    fn kind(&self, path: &Path, follow: bool) -> io::Result<Kind> {
        OsFs.kind(path, follow)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        OsFs.create_dir(path)
    }
    fn write_new(&self, dir: &Path, prefix: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        OsFs.write_new(dir, prefix, bytes)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        OsFs.sync_file(path)
    }
    fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        OsFs.rename(from, to, replace)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn open(&self, path: &Path) -> io::Result<Opened> {
        OsFs.open(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        OsFs.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OsFs.sync_dir(dir)
    }
    fn age(&self, path: &Path) -> io::Result<Duration> {
        OsFs.age(path)
    }
}

#[test]
fn a_directory_found_existing_is_made_durable_once_per_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("a/b");
    fs::create_dir_all(root.join("sub")).expect("left by a process that died before its fsync");
    let counting = Arc::new(CountingFs::default());
    let syncs = || counting.0.load(std::sync::atomic::Ordering::Relaxed);
    let dir = Dir::create_on(Arc::clone(&counting) as Arc<dyn Fs>, &root).expect("dir");
    let ancestors = root.ancestors().count() - 1;
    assert_eq!(syncs(), ancestors + 1, "every existing ancestor's parent fsynced, and the directory");
    dir.sub("sub").expect("existing");
    assert_eq!(syncs(), ancestors + 3, "the first use of an existing subdirectory fsyncs it and its parent");
    dir.sub("sub").expect("again").sub("new").expect("new");
    assert_eq!(syncs(), ancestors + 4, "then only a new directory's parent is fsynced");
}

/// The names in `dir` (temporary files included).
fn names(dir: &Dir) -> Vec<String> {
    dir.entries().expect("entries").into_iter().map(|(name, _)| name).collect()
}

fn drafted(dir: &Dir, bytes: &[u8]) -> Draft {
    let mut draft = dir.draft().expect("draft");
    // Written in pieces, as an encoder writes.
    for piece in bytes.chunks(3) {
        draft.write_all(piece).expect("write");
    }
    draft
}

#[test]
fn a_draft_is_published_by_the_rules_of_publish_and_leaves_no_temporary_file() {
    let (_tmp, dir) = dir();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert!(format!("{:?}", dir.draft().expect("draft")).starts_with("Draft::File"), "written as produced");
    assert_eq!(dir.publish_draft("a.bin", drafted(&dir, &big)).expect("first"), PutOutcome::Written);
    assert_eq!(fs::read(dir.path().join("a.bin")).expect("read"), big);
    assert_eq!(dir.publish_draft("a.bin", drafted(&dir, &big)).expect("same"), PutOutcome::AlreadyIdentical);
    let mut longer = big.clone();
    longer.push(0);
    for other in [&big[..big.len() - 1], &longer[..], b"different"] {
        let refused = dir.publish_draft("a.bin", drafted(&dir, other));
        assert!(matches!(refused, Err(StorageError::Conflict { .. })), "{refused:?}");
    }
    assert_eq!(fs::read(dir.path().join("a.bin")).expect("read"), big, "never replaced");
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, b"precious").expect("victim");
    symlink(&victim, dir.path().join("link.bin")).expect("symlink");
    let refused = dir.publish_draft("link.bin", drafted(&dir, b"x"));
    assert!(matches!(refused, Err(StorageError::NotRegular { .. })), "{refused:?}");
    assert!(matches!(dir.publish_draft("../a.bin", drafted(&dir, b"x")), Err(StorageError::BadName { .. })));
    let mut abandoned = dir.draft().expect("draft");
    abandoned.write_all(b"half a file").expect("write");
    assert!(names(&dir).iter().any(|n| is_temp_name(n)), "being written");
    drop(abandoned);
    assert_eq!(names(&dir), ["a.bin", "link.bin", "victim.txt"], "no temporary file left behind");
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
}

#[test]
fn a_draft_on_a_file_system_without_open_temporary_files_is_kept_in_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = Dir::create_on(Arc::new(CountingFs::default()), tmp.path()).expect("dir");
    let draft = drafted(&dir, b"bytes");
    assert!(format!("{draft:?}").starts_with("Draft::Memory"));
    assert_eq!(dir.publish_draft("a.bin", draft).expect("publish"), PutOutcome::Written);
    assert_eq!(dir.publish_draft("a.bin", drafted(&dir, b"bytes")).expect("same"), PutOutcome::AlreadyIdentical);
    assert!(matches!(dir.publish_draft("a.bin", drafted(&dir, b"other")), Err(StorageError::Conflict { .. })));
    assert_eq!(names(&dir), ["a.bin"]);
}
