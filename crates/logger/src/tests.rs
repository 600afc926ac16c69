use super::*;

fn line(text: &str, secs: i64) -> LogLine {
    LogLine {
        time: DateTime::from_timestamp(secs, 5).unwrap(),
        stream: Stream::Stdout,
        partial: false,
        text: text.into(),
    }
}

#[test]
fn a_record_survives_encoding_and_parsing() {
    let mut l = line("hello world  with spaces", 1_700_000_000);
    l.stream = Stream::Stderr;
    l.partial = true;
    assert_eq!(LogLine::parse(&l.encode()), Some(l));
    assert_eq!(LogLine::parse("garbage"), None);
    let empty = line("", 1);
    assert_eq!(LogLine::parse(&empty.encode()), Some(empty));
}

#[test]
fn the_writer_rotates_by_size_and_keeps_the_configured_number_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RotatingWriter::open(dir.path(), 200, 3).unwrap();
    for i in 0..40 {
        w.write(&line(&format!("line {i:02}"), 1_000 + i)).unwrap();
    }
    let files = files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 200);
    }
    let all = read(dir.path(), None, None).unwrap();
    let texts: Vec<_> = all.iter().map(|l| l.text.clone()).collect();
    assert_eq!(texts.last().unwrap(), "line 39");
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(texts, sorted, "oldest first across files");
    assert!(texts.len() < 40, "the oldest lines were rotated away");
}

#[test]
fn tail_and_since_select_the_last_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RotatingWriter::open(dir.path(), 1 << 20, 2).unwrap();
    for i in 0..10 {
        w.write(&line(&format!("{i}"), 100 + i)).unwrap();
    }
    let tail: Vec<_> = read(dir.path(), Some(3), None)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(tail, ["7", "8", "9"]);
    let since = DateTime::from_timestamp(105, 0);
    assert_eq!(read(dir.path(), None, since).unwrap().len(), 5);
    assert_eq!(read(dir.path(), Some(2), since).unwrap().len(), 2);
}

#[test]
fn a_follower_sees_new_records_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RotatingWriter::open(dir.path(), 120, 3).unwrap();
    w.write(&line("before", 1)).unwrap();
    let mut f = Follower::new(dir.path(), false);
    assert!(f.poll().is_empty(), "starts at the end");
    for i in 0..6 {
        w.write(&line(&format!("after {i}"), 2 + i)).unwrap();
    }
    let seen: Vec<_> = f.poll().into_iter().map(|l| l.text).collect();
    assert_eq!(
        seen,
        ["after 0", "after 1", "after 2", "after 3", "after 4", "after 5"]
    );
    assert!(files(dir.path()).len() > 1, "the writer rotated meanwhile");
}

#[test]
fn bytes_become_lines_long_ones_partial_records_and_the_rest_a_partial_one() {
    let mut l = Lines::default();
    assert!(l.push(b"hel").is_empty(), "no line yet");
    assert_eq!(
        l.push(b"lo\nworld\nto"),
        [(b"hello".to_vec(), false), (b"world".to_vec(), false)]
    );
    let long = vec![b'x'; MAX_LINE + 10];
    let out = l.push(&long);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.len(), out[0].1), (MAX_LINE, true));
    assert_eq!(&out[0].0[..2], b"to");
    assert_eq!(l.push(b"\n"), [(vec![b'x'; 12], false)]);
    assert_eq!(l.finish(), None);
    l.push(b"no newline at the end");
    assert_eq!(l.finish(), Some(b"no newline at the end".to_vec()));
}
