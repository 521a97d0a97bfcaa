//! Parquet and JSON Lines I/O with arrow: artifact metadata, JSONL ↔
//! Parquet conversion, heads for `show`, exports. Everything swestar
//! writes is zstd-compressed Parquet.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: not a readable Parquet file: {source}", path.display())]
    Parquet { path: std::path::PathBuf, source: parquet::errors::ParquetError },
    #[error("{}: {source}", path.display())]
    Arrow { path: std::path::PathBuf, source: arrow_schema::ArrowError },
    /// A JSON Lines row that does not parse, at its line in the file.
    #[error("{}:{line}:{column}: {message}", path.display())]
    JsonLine { path: std::path::PathBuf, line: usize, column: usize, message: String },
}

impl TableError {
    /// The I/O error underneath, if that is what this is (a closed pipe, a
    /// full disk).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            TableError::Io { source, .. } => Some(source.kind()),
            TableError::Arrow { source: arrow_schema::ArrowError::IoError(_, e), .. } => Some(e.kind()),
            _ => None,
        }
    }
}

/// The error for line `line` (1-based) of a JSON Lines file: `parsed` is
/// how that line failed to parse, `None` when it parsed but is not an
/// object. serde's own position counts from the line's start.
pub fn json_line_error(path: &Path, line: usize, parsed: Option<serde_json::Error>) -> TableError {
    let (column, message) = match parsed {
        Some(e) => {
            let text = e.to_string();
            let bare = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
            (e.column(), format!("not JSON: {bare}"))
        }
        None => (1, "not a JSON object (each line must be one row: {\"column\": value, ...})".to_string()),
    };
    TableError::JsonLine { path: path.to_path_buf(), line, column, message }
}

/// The first line of a JSON Lines file that is not a JSON object, if any:
/// arrow's reader reports positions within one line, so after it fails
/// this finds the line a user has to fix.
fn first_bad_line(path: &Path) -> Result<Option<TableError>, TableError> {
    use std::io::BufRead;
    let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io(path))? == 0 {
            return Ok(None);
        }
        n += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(v) if v.is_object() => {}
            Ok(_) => return Ok(Some(json_line_error(path, n, None))),
            Err(e) => return Ok(Some(json_line_error(path, n, Some(e)))),
        }
    }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io { path: path.to_path_buf(), source }
}
pub(super) fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> TableError + '_ {
    move |source| TableError::Parquet { path: path.to_path_buf(), source }
}
pub(super) fn ar(path: &Path) -> impl FnOnce(arrow_schema::ArrowError) -> TableError + '_ {
    move |source| TableError::Arrow { path: path.to_path_buf(), source }
}

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_created_by(concat!("swestar ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

/// Row count and Arrow schema from a Parquet file's footer.
pub fn parquet_info(path: &Path) -> Result<(u64, SchemaRef), TableError> {
    let file = File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(path))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    Ok((rows, builder.schema().clone()))
}

/// Reads up to `limit` rows (all when `None`) from Parquet files in order.
pub fn read_parquet(paths: &[&Path], limit: Option<usize>) -> Result<(SchemaRef, Vec<RecordBatch>), TableError> {
    let mut batches = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    let mut left = limit.unwrap_or(usize::MAX);
    for path in paths {
        let file = File::open(path).map_err(io(path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(path))?;
        schema.get_or_insert_with(|| builder.schema().clone());
        if left == 0 {
            continue;
        }
        let reader = builder.with_batch_size(left.clamp(1, 8192)).build().map_err(pq(path))?;
        for batch in reader {
            let batch = batch.map_err(ar(path))?;
            let take = batch.num_rows().min(left);
            left -= take;
            batches.push(batch.slice(0, take));
            if left == 0 {
                break;
            }
        }
    }
    Ok((schema.unwrap_or_else(|| Arc::new(Schema::empty())), batches))
}

/// True when a JSON file holds one array of rows (as SWE-bench's JSON
/// exports do) rather than JSON Lines.
pub fn is_json_array(path: &Path) -> Result<bool, TableError> {
    use std::io::Read;
    let mut f = File::open(path).map_err(io(path))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok(false);
        }
        if let Some(b) = buf[..n].iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(*b == b'[');
        }
    }
}

/// The rows of a JSON array file, as JSON Lines text.
pub fn json_array_to_lines(path: &Path) -> Result<Vec<u8>, TableError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&text).map_err(|e| {
        io(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a JSON array of rows: {e}")))
    })?;
    let mut out = Vec::with_capacity(text.len());
    for r in rows {
        serde_json::to_writer(&mut out, &r).expect("plain data");
        out.push(b'\n');
    }
    Ok(out)
}

/// Converts JSON Lines (or a JSON array of rows) to Parquet, inferring the
/// schema from all rows.
pub fn jsonl_to_parquet(src: &Path, dst: &Path) -> Result<u64, TableError> {
    if is_json_array(src)? {
        let lines = json_array_to_lines(src)?;
        let tmp = dst.with_extension("lines.jsonl");
        std::fs::write(&tmp, lines).map_err(io(&tmp))?;
        let n = jsonl_to_parquet(&tmp, dst);
        let _ = std::fs::remove_file(&tmp);
        return n;
    }
    let located = |e: arrow_schema::ArrowError| match first_bad_line(src) {
        Ok(Some(bad)) => bad,
        Ok(None) => ar(src)(e),
        Err(io) => io,
    };
    let mut reader = BufReader::new(File::open(src).map_err(io(src))?);
    let (schema, _) = arrow_json::reader::infer_json_schema_from_seekable(&mut reader, None).map_err(located)?;
    reader.rewind().map_err(io(src))?;
    let schema = Arc::new(schema);
    let json = arrow_json::ReaderBuilder::new(schema.clone()).build(reader).map_err(ar(src))?;
    let out = File::create(dst).map_err(io(dst))?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties())).map_err(pq(dst))?;
    let mut rows = 0u64;
    for batch in json {
        let batch = batch.map_err(located)?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(pq(dst))?;
    }
    writer.close().map_err(pq(dst))?;
    Ok(rows)
}

/// Text formats an artifact can be written in (`export`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header row; nested values as JSON text.
    Csv,
}

/// Writes Parquet files as one JSON Lines file.
pub fn parquet_to_jsonl(srcs: &[&Path], dst: &Path) -> Result<u64, TableError> {
    let mut out = BufWriter::new(File::create(dst).map_err(io(dst))?);
    let rows = parquet_to_text(srcs, TextFormat::Jsonl, &mut out, dst)?;
    out.flush().map_err(io(dst))?;
    Ok(rows)
}

/// Streams Parquet files to `out` as JSON Lines or CSV, a batch at a time
/// (an export of a 20 GB rollout never holds it). `dst` names the output
/// in errors (`-` for stdout).
pub fn parquet_to_text(srcs: &[&Path], format: TextFormat, out: &mut dyn Write, dst: &Path) -> Result<u64, TableError> {
    let mut rows = 0u64;
    let mut header = format == TextFormat::Csv;
    for src in srcs {
        let file = File::open(src).map_err(io(src))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(src))?;
        if std::mem::take(&mut header) {
            let names: Vec<String> = builder.schema().fields().iter().map(|f| csv_field(f.name())).collect();
            writeln!(out, "{}", names.join(",")).map_err(io(dst))?;
        }
        let fields: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
        let reader = builder.with_batch_size(1024).build().map_err(pq(src))?;
        for batch in reader {
            let batch = batch.map_err(ar(src))?;
            rows += batch.num_rows() as u64;
            match format {
                TextFormat::Jsonl => {
                    let mut writer = arrow_json::LineDelimitedWriter::new(&mut *out);
                    writer.write(&batch).map_err(ar(dst))?;
                    writer.finish().map_err(ar(dst))?;
                }
                TextFormat::Csv => {
                    for row in batches_to_json_rows(&[batch]).map_err(ar(src))? {
                        let cells: Vec<String> = fields.iter().map(|f| csv_cell(row.get(f))).collect();
                        writeln!(out, "{}", cells.join(",")).map_err(io(dst))?;
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// One CSV cell: null is empty, text is itself, anything nested is its
/// JSON; quoted when it holds a separator, a quote or a line break.
fn csv_cell(value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => csv_field(s),
        Some(other) => csv_field(&other.to_string()),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Writes Parquet files as one Parquet file (zstd).
pub fn concat_parquet(srcs: &[&Path], dst: &Path) -> Result<u64, TableError> {
    let (schema, _) = read_parquet(srcs, Some(0))?;
    let out = File::create(dst).map_err(io(dst))?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties())).map_err(pq(dst))?;
    let mut rows = 0u64;
    for src in srcs {
        let file = File::open(src).map_err(io(src))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(src))?.build().map_err(pq(src))?;
        for batch in reader {
            let batch = batch.map_err(ar(src))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(pq(dst))?;
        }
    }
    writer.close().map_err(pq(dst))?;
    Ok(rows)
}

/// Rows as JSON objects (for `show --json`).
pub fn batches_to_json_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>, arrow_schema::ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buf);
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    Ok(buf.split(|c| *c == b'\n').filter(|l| !l.is_empty()).filter_map(|l| serde_json::from_slice(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_quote_what_needs_it() {
        use serde_json::json;
        let cases = [
            (json!(null), ""),
            (json!("plain"), "plain"),
            (json!("a,b"), "\"a,b\""),
            (json!("say \"hi\""), "\"say \"\"hi\"\"\""),
            (json!("two\nlines"), "\"two\nlines\""),
            (json!(3.5), "3.5"),
            (json!(true), "true"),
            (json!([1, {"a": "b"}]), "\"[1,{\"\"a\"\":\"\"b\"\"}]\""),
        ];
        for (value, want) in cases {
            assert_eq!(csv_cell(Some(&value)), want, "{value}");
        }
        assert_eq!(csv_cell(None), "");
    }

    #[test]
    fn a_bad_json_line_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("d.jsonl");
        let mut text: String = (0..100).map(|i| format!("{{\"n\": {i}}}\n")).collect();
        text.push_str("{\"n\": oops}\n");
        std::fs::write(&src, text).unwrap();
        let e = jsonl_to_parquet(&src, &dir.path().join("d.parquet")).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:101:7: not JSON: expected value"), "{e}");
        std::fs::write(&src, "{\"n\": 1}\n\n[1, 2]\n").unwrap();
        let e = jsonl_to_parquet(&src, &dir.path().join("d.parquet")).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:3:1: not a JSON object"), "{e}");
    }

    #[test]
    fn jsonl_round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.jsonl");
        std::fs::write(&src, "{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":null}\n{\"a\":3}\n").unwrap();
        let pq = dir.path().join("t.parquet");
        assert_eq!(jsonl_to_parquet(&src, &pq).unwrap(), 3);
        let (rows, schema) = parquet_info(&pq).unwrap();
        assert_eq!(rows, 3);
        assert_eq!(schema.field(0).name(), "a");
        let back = dir.path().join("out.jsonl");
        assert_eq!(parquet_to_jsonl(&[&pq], &back).unwrap(), 3);
        let text = std::fs::read_to_string(&back).unwrap();
        assert_eq!(text.lines().next().unwrap(), "{\"a\":1,\"b\":\"x\"}");
        let (_, head) = read_parquet(&[&pq, &pq], Some(4)).unwrap();
        assert_eq!(head.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        let joined = dir.path().join("j.parquet");
        assert_eq!(concat_parquet(&[&pq, &pq], &joined).unwrap(), 6);
    }

    #[test]
    fn conversion_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.jsonl");
        std::fs::write(&src, "{\"a\":1.5,\"t\":\"hello\"}\n").unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        jsonl_to_parquet(&src, &a).unwrap();
        jsonl_to_parquet(&src, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }

    #[test]
    fn garbage_is_reported_as_not_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        std::fs::write(&p, "not parquet").unwrap();
        let e = parquet_info(&p).unwrap_err().to_string();
        assert!(e.contains("not a readable Parquet file"), "{e}");
    }
}
