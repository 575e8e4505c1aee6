//! Reading a mapped source's rows: CSV by header name, or NDJSON objects,
//! streamed (one row in memory at a time, whatever the file size).
//!
//! A row that cannot be read (bad UTF-8, bad JSON, a truncated last line,
//! a wrong field count) is not an error of the run: it comes back with its
//! problem and its raw text, and ends in the quarantine with its line
//! number. What stops the run is what makes every row unreadable: a file
//! that is not UTF-8 text at all (UTF-16, binary), a missing header, a
//! mapping naming a column the header does not have.

use anyhow::Context;
use std::io::{BufRead, BufReader, Read};

use super::mapping::{Format, Mapping};
use super::quarantine::{Problem, ProblemCode};

/// One source row: the values by column, in source order.
#[derive(Clone, Debug, Default)]
pub struct RawRow {
    /// 1-based line of the file (CSV: the line the record starts on).
    pub line_no: i64,
    pub values: Vec<(String, String)>,
    /// Why the row could not be read, if it could not.
    pub problem: Option<Problem>,
}

impl RawRow {
    /// The value of a column, trimmed; `None` when absent or empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The row as a JSON object (what the quarantine stores, encrypted).
    pub fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        zeroize::Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default())
    }

    /// A row back from its JSON form (a replay).
    pub fn from_json(line_no: i64, bytes: &[u8]) -> anyhow::Result<Self> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).context("a quarantined row is not a JSON object")?;
        let values = map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        Ok(Self {
            line_no,
            values,
            problem: None,
        })
    }
}

/// Streams the rows of a file.
pub enum Rows<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        header: Vec<String>,
        record: csv::ByteRecord,
    },
    Ndjson {
        reader: R,
        line_no: i64,
        buf: Vec<u8>,
    },
}

/// Refuses files that are not UTF-8 text, with the reason.
fn check_text(head: &[u8]) -> anyhow::Result<()> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        anyhow::bail!("line 1: the file is UTF-16; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)");
    }
    if head.iter().take(4096).any(|b| *b == 0) {
        anyhow::bail!("line 1: the file is not text (it contains NUL bytes)");
    }
    Ok(())
}

impl<R: Read> Rows<BufReader<R>> {
    /// Opens `reader` in the mapping's format; for CSV, reads and checks the
    /// header against the mapping.
    pub fn open(reader: R, mapping: &Mapping) -> anyhow::Result<Self> {
        let mut buffered = BufReader::with_capacity(1 << 16, reader);
        let head = buffered.fill_buf().context("cannot read the input")?;
        check_text(head)?;
        match mapping.format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(mapping.delimiter)
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(buffered);
                let header = reader
                    .byte_headers()
                    .context("line 1: cannot read the CSV header")?
                    .clone();
                if header.is_empty() {
                    anyhow::bail!("line 1: the file is empty (no header)");
                }
                let header: Vec<String> = header
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let h = std::str::from_utf8(h)
                            .map_err(|_| anyhow::anyhow!("line 1: the header is not UTF-8"))?;
                        let h = if i == 0 {
                            h.trim_start_matches('\u{feff}')
                        } else {
                            h
                        };
                        Ok(h.trim().to_owned())
                    })
                    .collect::<anyhow::Result<_>>()?;
                mapping.check_header(&header)?;
                Ok(Rows::Csv {
                    reader,
                    header,
                    record: csv::ByteRecord::new(),
                })
            }
            Format::Ndjson => Ok(Rows::Ndjson {
                reader: buffered,
                line_no: 0,
                buf: Vec::new(),
            }),
        }
    }
}

impl<R: BufRead> Rows<R> {
    /// The next row, `None` at the end. Errors only on an I/O failure.
    pub fn next_row(&mut self) -> anyhow::Result<Option<RawRow>> {
        match self {
            Rows::Csv {
                reader,
                header,
                record,
            } => loop {
                match reader.read_byte_record(record) {
                    Ok(false) => return Ok(None),
                    Ok(true) => {}
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            return Err(e).with_context(|| format!("line {line}: cannot read"));
                        }
                        return Ok(Some(RawRow {
                            line_no: i64::try_from(line).unwrap_or(i64::MAX),
                            values: Vec::new(),
                            problem: Some(Problem::row(ProblemCode::BadFormat)),
                        }));
                    }
                }
                let line_no = record
                    .position()
                    .map_or(0, |p| i64::try_from(p.line()).unwrap_or(i64::MAX));
                if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
                    continue; // a blank line
                }
                let mut problem = None;
                let mut values = Vec::with_capacity(header.len());
                for (i, bytes) in record.iter().enumerate() {
                    let name = header
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("column_{}", i + 1));
                    let text = match std::str::from_utf8(bytes) {
                        Ok(t) => t.to_owned(),
                        Err(_) => {
                            problem.get_or_insert(Problem::new(ProblemCode::InvalidUtf8, &name));
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                    };
                    values.push((name, text));
                }
                if problem.is_none() && record.len() != header.len() {
                    problem = Some(Problem::row(ProblemCode::WrongColumnCount));
                }
                return Ok(Some(RawRow {
                    line_no,
                    values,
                    problem,
                }));
            },
            Rows::Ndjson {
                reader,
                line_no,
                buf,
            } => loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', buf)
                    .with_context(|| format!("line {}: cannot read", *line_no + 1))?;
                if n == 0 {
                    return Ok(None);
                }
                *line_no += 1;
                let complete = buf.ends_with(b"\n");
                let bytes = buf.strip_suffix(b"\n").unwrap_or(buf);
                let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(parse_json_line(*line_no, bytes, complete)));
            },
        }
    }
}

fn parse_json_line(line_no: i64, bytes: &[u8], complete: bool) -> RawRow {
    let raw = |code| RawRow {
        line_no,
        values: vec![(
            "_line".to_owned(),
            String::from_utf8_lossy(bytes).into_owned(),
        )],
        problem: Some(Problem::row(code)),
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return raw(ProblemCode::InvalidUtf8);
    };
    let object = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => o,
        Ok(_) => return raw(ProblemCode::BadJson),
        Err(_) if !complete => return raw(ProblemCode::TruncatedLine),
        Err(_) => return raw(ProblemCode::BadJson),
    };
    let mut problem = None;
    let values = object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    problem.get_or_insert(Problem::new(ProblemCode::NestedValue, &k));
                    other.to_string()
                }
            };
            (k, text)
        })
        .collect();
    RawRow {
        line_no,
        values,
        problem,
    }
}
