//! Parquet and JSON Lines I/O with arrow: artifact metadata, JSONL ↔
//! Parquet conversion, heads for `show`, exports. Everything swestar
//! writes is zstd-compressed Parquet.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
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
    Arrow { path: std::path::PathBuf, source: arrow::error::ArrowError },
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io { path: path.to_path_buf(), source }
}
pub(super) fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> TableError + '_ {
    move |source| TableError::Parquet { path: path.to_path_buf(), source }
}
pub(super) fn ar(path: &Path) -> impl FnOnce(arrow::error::ArrowError) -> TableError + '_ {
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
    let mut reader = BufReader::new(File::open(src).map_err(io(src))?);
    let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(&mut reader, None).map_err(ar(src))?;
    reader.rewind().map_err(io(src))?;
    let schema = Arc::new(schema);
    let json = arrow::json::ReaderBuilder::new(schema.clone()).build(reader).map_err(ar(src))?;
    let out = File::create(dst).map_err(io(dst))?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_properties())).map_err(pq(dst))?;
    let mut rows = 0u64;
    for batch in json {
        let batch = batch.map_err(ar(src))?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(pq(dst))?;
    }
    writer.close().map_err(pq(dst))?;
    Ok(rows)
}

/// Writes Parquet files as one JSON Lines file.
pub fn parquet_to_jsonl(srcs: &[&Path], dst: &Path) -> Result<u64, TableError> {
    let out = BufWriter::new(File::create(dst).map_err(io(dst))?);
    let mut writer = arrow::json::LineDelimitedWriter::new(out);
    let mut rows = 0u64;
    for src in srcs {
        let file = File::open(src).map_err(io(src))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(src))?.build().map_err(pq(src))?;
        for batch in reader {
            let batch = batch.map_err(ar(src))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(ar(dst))?;
        }
    }
    writer.finish().map_err(ar(dst))?;
    writer.into_inner().flush().map_err(io(dst))?;
    Ok(rows)
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
pub fn batches_to_json_rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>, arrow::error::ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
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
