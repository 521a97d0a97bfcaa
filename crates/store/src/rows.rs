//! Streaming rows in and out of tables, for stages whose tables do not fit
//! in memory (a 250k-trajectory rollout is tens of GB of messages).
//!
//! [`RowReader`] yields the rows `lo..hi` of a table input (Parquet part
//! files in order, or JSON Lines) a batch at a time, opening only the
//! row groups that overlap the range, so a shard reads its own rows and
//! no others. [`RowWriter`] appends rows to a Parquet file with a fixed
//! schema, cutting a row group whenever the buffered data passes a byte
//! budget, so memory stays bounded whatever the row sizes.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use super::table::{self, ar, io, pq, TableError};
use crate::format::TableFormat;

/// Rows per batch handed out; a batch of 70 KB trajectories is ~18 MB.
const BATCH_ROWS: usize = 256;

/// Total rows of a table input, from Parquet footers or by counting JSON
/// lines (streamed, never held).
pub fn count_rows(paths: &[PathBuf], format: TableFormat) -> Result<u64, TableError> {
    let mut n = 0;
    for p in paths {
        n += match format {
            TableFormat::Parquet => table::parquet_info(p)?.0,
            TableFormat::Jsonl if table::is_json_array(p)? => {
                table::json_array_to_lines(p)?.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64
            }
            TableFormat::Jsonl => {
                let mut r = BufReader::new(File::open(p).map_err(io(p))?);
                let mut line = Vec::new();
                let mut count = 0;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).map_err(io(p))? == 0 {
                        break;
                    }
                    if !line.trim_ascii().is_empty() {
                        count += 1;
                    }
                }
                count
            }
        };
    }
    Ok(n)
}

/// One source of rows: where it is and which of its rows to read.
struct Part {
    path: PathBuf,
    /// Top-level columns to read (Parquet); `None`: all.
    columns: Option<Vec<String>>,
    /// Rows of this part to skip, then to read.
    skip: u64,
    take: u64,
}

/// Batches of rows from one part.
type Batches = Box<dyn Iterator<Item = Result<Vec<Value>, TableError>>>;

/// Rows `lo..hi` of a table input as JSON objects, in batches.
pub struct RowReader {
    format: TableFormat,
    parts: std::vec::IntoIter<Part>,
    current: Option<Batches>,
    /// Index (within the whole input) of the next row handed out.
    pub next_row: u64,
}

/// A table input with the row count of each part, counted once (JSON
/// Lines are counted by a full scan, so a stage should not count twice).
pub struct Table {
    paths: Vec<PathBuf>,
    format: TableFormat,
    counts: Vec<u64>,
}

impl Table {
    pub fn open(paths: &[PathBuf], format: TableFormat) -> Result<Table, TableError> {
        let counts = paths.iter().map(|p| count_rows(std::slice::from_ref(p), format)).collect::<Result<_, _>>()?;
        Ok(Table { paths: paths.to_vec(), format, counts })
    }

    pub fn rows(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Rows `lo..hi`.
    pub fn read(&self, lo: u64, hi: u64) -> RowReader {
        self.read_columns(lo, hi, None)
    }

    /// Rows `lo..hi`, only the named top-level columns of Parquet parts
    /// (JSON Lines rows come whole).
    pub fn read_columns(&self, lo: u64, hi: u64, columns: Option<&[&str]>) -> RowReader {
        let columns = columns.map(|c| c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut parts = Vec::new();
        let mut start = 0u64;
        for (p, &rows) in self.paths.iter().zip(&self.counts) {
            let (a, b) = (lo.max(start), hi.min(start + rows));
            if a < b {
                parts.push(Part { path: p.clone(), columns: columns.clone(), skip: a - start, take: b - a });
            }
            start += rows;
        }
        RowReader { format: self.format, parts: parts.into_iter(), current: None, next_row: lo }
    }
}

impl RowReader {
    /// Rows `lo..hi` of a table input (counting its parts first).
    pub fn open(paths: &[PathBuf], format: TableFormat, lo: u64, hi: u64) -> Result<RowReader, TableError> {
        Ok(Table::open(paths, format)?.read(lo, hi))
    }

    fn open_part(&self, part: Part) -> Result<Batches, TableError> {
        match self.format {
            TableFormat::Parquet => parquet_part(part),
            TableFormat::Jsonl => jsonl_part(part),
        }
    }
}

impl Iterator for RowReader {
    type Item = Result<Vec<Value>, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next() {
                    Some(Ok(rows)) => {
                        self.next_row += rows.len() as u64;
                        return Some(Ok(rows));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => self.current = None,
                }
            }
            let part = self.parts.next()?;
            match self.open_part(part) {
                Ok(it) => self.current = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The row groups of one Parquet file that hold rows `skip..skip+take`,
/// decoded a batch at a time and cut to the range.
fn parquet_part(part: Part) -> Result<Batches, TableError> {
    let path = part.path.clone();
    let file = File::open(&path).map_err(io(&path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq(&path))?;
    let (end, mut groups, mut first) = (part.skip + part.take, Vec::new(), None);
    let mut at = 0u64;
    for (i, g) in builder.metadata().row_groups().iter().enumerate() {
        let n = g.num_rows().max(0) as u64;
        if at + n > part.skip && at < end {
            first.get_or_insert(at);
            groups.push(i);
        }
        at += n;
    }
    let first = first.unwrap_or(0);
    let mut builder = builder.with_row_groups(groups).with_batch_size(BATCH_ROWS);
    if let Some(columns) = &part.columns {
        let schema = builder.schema().clone();
        let roots: Vec<usize> = columns.iter().filter_map(|c| schema.index_of(c).ok()).collect();
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(pq(&path))?;
    // Position (within the file) of the next decoded row.
    let mut pos = first;
    let (lo, hi) = (part.skip, end);
    Ok(Box::new(reader.filter_map(move |batch| {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return Some(Err(ar(&path)(e))),
        };
        let (a, b) = (pos, pos + batch.num_rows() as u64);
        pos = b;
        let (from, to) = (lo.max(a), hi.min(b));
        if from >= to {
            return None;
        }
        let slice = batch.slice((from - a) as usize, (to - from) as usize);
        Some(table::batches_to_json_rows(&[slice]).map_err(ar(&path)))
    })))
}

fn jsonl_part(part: Part) -> Result<Batches, TableError> {
    let path = part.path.clone();
    let mut reader: Box<dyn BufRead> = if table::is_json_array(&path)? {
        // A JSON array of rows (small: an instances file), as lines.
        Box::new(std::io::Cursor::new(table::json_array_to_lines(&path)?))
    } else {
        Box::new(BufReader::new(File::open(&path).map_err(io(&path))?))
    };
    let (mut seen, mut left, mut line_no) = (0u64, part.take, 0usize);
    let mut line = String::new();
    Ok(Box::new(std::iter::from_fn(move || {
        let mut rows = Vec::new();
        while left > 0 && rows.len() < BATCH_ROWS {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Some(Err(io(&path)(e))),
            }
            line_no += 1;
            if line.trim().is_empty() {
                continue;
            }
            seen += 1;
            if seen <= part.skip {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.is_object() => rows.push(v),
                Ok(_) => return Some(Err(table::json_line_error(&path, line_no, None))),
                Err(e) => return Some(Err(table::json_line_error(&path, line_no, Some(e)))),
            }
            left -= 1;
        }
        (!rows.is_empty()).then_some(Ok(rows))
    })))
}

/// Buffered rows are turned into a record batch at this many bytes of
/// JSON; a row group is closed once the writer holds this many bytes.
const BATCH_BYTES: usize = 16 << 20;
const ROW_GROUP_BYTES: usize = 128 << 20;

/// Appends JSON rows to a Parquet file with a fixed schema.
pub struct RowWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    pending: Vec<u8>,
    pending_rows: usize,
    batch_bytes: usize,
    row_group_bytes: usize,
    pub rows: u64,
}

impl RowWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<RowWriter, TableError> {
        let file = File::create(path).map_err(io(path))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(table::writer_properties())).map_err(pq(path))?;
        Ok(RowWriter {
            path: path.to_path_buf(),
            schema,
            writer,
            pending: Vec::new(),
            pending_rows: 0,
            batch_bytes: BATCH_BYTES,
            row_group_bytes: ROW_GROUP_BYTES,
            rows: 0,
        })
    }

    /// Smaller batches and row groups than the defaults (tests, and
    /// tables read back in small ranges).
    pub fn with_limits(mut self, batch_bytes: usize, row_group_bytes: usize) -> RowWriter {
        self.batch_bytes = batch_bytes.max(1);
        self.row_group_bytes = row_group_bytes.max(1);
        self
    }

    /// One row; fields the schema does not name are ignored, missing
    /// nullable ones are null.
    pub fn push(&mut self, row: &impl serde::Serialize) -> Result<(), TableError> {
        let json = serde_json::to_vec(row)
            .map_err(|e| io(&self.path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        self.push_json(&json)
    }

    /// One row already serialized as a JSON object (no newline).
    pub fn push_json(&mut self, row: &[u8]) -> Result<(), TableError> {
        self.pending.extend_from_slice(row);
        self.pending.push(b'\n');
        self.pending_rows += 1;
        self.rows += 1;
        if self.pending.len() >= self.batch_bytes || self.pending_rows >= 8192 {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), TableError> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let mut decoder = arrow_json::ReaderBuilder::new(self.schema.clone())
            .with_batch_size(self.pending_rows)
            .build_decoder()
            .map_err(ar(&self.path))?;
        decoder.decode(&self.pending).map_err(ar(&self.path))?;
        if let Some(batch) = decoder.flush().map_err(ar(&self.path))? {
            self.writer.write(&batch).map_err(pq(&self.path))?;
        }
        self.pending.clear();
        self.pending_rows = 0;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush().map_err(pq(&self.path))?;
        }
        Ok(())
    }

    /// Writes what is buffered and the footer; returns the row count.
    pub fn finish(mut self) -> Result<u64, TableError> {
        self.drain()?;
        self.writer.close().map_err(pq(&self.path))?;
        Ok(self.rows)
    }
}

/// Reads a whole (small) table input, e.g. an instances table that a
/// stage looks rows up in.
pub fn read_all(paths: &[PathBuf], format: TableFormat) -> Result<Vec<Value>, TableError> {
    read_all_columns(paths, format, None)
}

/// Reads a whole table, only the named columns (all when `None`).
pub fn read_all_columns(
    paths: &[PathBuf],
    format: TableFormat,
    columns: Option<&[&str]>,
) -> Result<Vec<Value>, TableError> {
    let table = Table::open(paths, format)?;
    let mut out = Vec::new();
    for batch in table.read_columns(0, table.rows(), columns) {
        out.extend(batch?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema};
    use serde_json::json;
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("i", DataType::UInt64, false), Field::new("s", DataType::Utf8, true)]))
    }

    #[test]
    fn ranges_cross_files_and_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for f in 0..3u64 {
            let p = dir.path().join(format!("part-{f}.parquet"));
            let mut w = RowWriter::create(&p, schema()).unwrap().with_limits(2000, 1000);
            for i in 0..1000u64 {
                w.push(&json!({"i": f * 1000 + i, "s": "x".repeat((i % 7) as usize)})).unwrap();
            }
            assert_eq!(w.finish().unwrap(), 1000);
            let file = File::open(&p).unwrap();
            let groups = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().metadata().num_row_groups();
            assert!(groups > 5, "{groups} row groups");
            paths.push(p);
        }
        assert_eq!(count_rows(&paths, TableFormat::Parquet).unwrap(), 3000);
        let got: Vec<u64> = RowReader::open(&paths, TableFormat::Parquet, 990, 2010)
            .unwrap()
            .flat_map(|b| b.unwrap())
            .map(|r| r["i"].as_u64().unwrap())
            .collect();
        assert_eq!(got, (990..2010).collect::<Vec<_>>());
        assert_eq!(read_all(&paths, TableFormat::Parquet).unwrap().len(), 3000);
        assert_eq!(RowReader::open(&paths, TableFormat::Parquet, 5, 5).unwrap().count(), 0);
        let table = Table::open(&paths, TableFormat::Parquet).unwrap();
        assert_eq!(table.rows(), 3000);
        let narrow: Vec<Value> = table.read_columns(0, 2, Some(&["i"])).flat_map(|b| b.unwrap()).collect();
        assert_eq!(narrow, [json!({"i": 0}), json!({"i": 1})]);
    }

    #[test]
    fn a_json_array_of_rows_reads_like_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, "\n [ {\"i\": 0}, {\"i\": 1},\n {\"i\": 2} ]\n").unwrap();
        let paths = vec![p];
        assert_eq!(count_rows(&paths, TableFormat::Jsonl).unwrap(), 3);
        let got: Vec<Value> =
            RowReader::open(&paths, TableFormat::Jsonl, 1, 3).unwrap().flat_map(|b| b.unwrap()).collect();
        assert_eq!(got, [json!({"i": 1}), json!({"i": 2})]);
    }

    #[test]
    fn jsonl_ranges_skip_blank_lines_and_name_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"i\":0}\n\n{\"i\":1}\n{\"i\":2}\nnot json\n").unwrap();
        let paths = vec![p];
        assert_eq!(count_rows(&paths, TableFormat::Jsonl).unwrap(), 4);
        let got: Vec<Value> =
            RowReader::open(&paths, TableFormat::Jsonl, 1, 3).unwrap().flat_map(|b| b.unwrap()).collect();
        assert_eq!(got, [json!({"i": 1}), json!({"i": 2})]);
        let err = read_all(&paths, TableFormat::Jsonl).unwrap_err().to_string();
        assert!(err.contains("t.jsonl:5:2: not JSON"), "{err}");
    }
}
