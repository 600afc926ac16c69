//! Standard output that ends quietly when the reader goes away: `aosctl logs | head` or
//! `aosctl completion fish | head` end with exit 0 and no message, as a closed pipe is a normal
//! end for a command line tool. Every module of the binary prints through [`write`] (the
//! binary's `print!`/`println!` are defined on top of it in main.rs).

use std::io::Write;

/// Writes to stdout; a closed pipe ends the process with 0, another write error with 1.
pub fn write(args: std::fmt::Arguments) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        closed(&e);
    }
}

/// Writes bytes to stdout, with the same ending as [`write`].
pub fn write_bytes(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(b).and_then(|()| out.flush()) {
        closed(&e);
    }
}

fn closed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// Whether an error comes from a reader that went away (somewhere in its chain).
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
