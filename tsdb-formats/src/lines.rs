//! Lines of bytes, numbered, without copying.

/// The lines of `bytes`, numbered from 1, each without its `\n` (or `\r\n`) and without the
/// spaces and tabs around it; blank lines are yielded too (empty), so that numbers stay
/// right. A last line without a newline counts; a final newline starts no line. Bytes need
/// not be UTF-8: each line is checked by the scanner that reads it, so that one bad byte
/// costs one line.
///
/// ```
/// let got: Vec<_> = tsdb_formats::lines(b"a 1\r\n\n  b 2 \nc").collect();
/// assert_eq!(got, vec![(1, &b"a 1"[..]), (2, &b""[..]), (3, &b"b 2"[..]), (4, &b"c"[..])]);
/// ```
pub fn lines(bytes: &[u8]) -> Lines<'_> {
    Lines {
        rest: bytes,
        number: 0,
    }
}

/// The iterator of [`lines`].
#[derive(Clone, Debug)]
pub struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let line = match memchr::memchr(b'\n', self.rest) {
            Some(i) => {
                let line = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                line
            }
            None => std::mem::take(&mut self.rest),
        };
        self.number += 1;
        Some((self.number, trim(line)))
    }
}

/// `line` without the spaces, tabs and carriage returns around it.
pub(crate) fn trim(line: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = line.iter().position(|b| !blank(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// `line` as text, or the rejection naming where it stops being UTF-8.
pub(crate) fn utf8(line: &[u8]) -> Result<&str, crate::Reject> {
    std::str::from_utf8(line).map_err(|e| crate::Reject::utf8(e.valid_up_to()))
}

/// The words of `s`: what lies between spaces and tabs.
pub(crate) fn words(s: &str) -> Words<'_> {
    Words { rest: s }
}

/// The iterator of [`words`].
pub(crate) struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.rest.as_bytes();
        let blank = |c: &u8| *c == b' ' || *c == b'\t';
        let start = b.iter().position(|c| !blank(c))?;
        let end = b[start..]
            .iter()
            .position(blank)
            .map_or(b.len(), |i| start + i);
        let word = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(word)
    }
}
