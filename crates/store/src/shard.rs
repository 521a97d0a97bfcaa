//! Shards: 1/N of a stage's rows, run independently (a SLURM array task).
//! Their names in a stage's staging directory, the rows each one owns, and
//! the `I/N` form of `swestar exec --shard`.

use std::path::{Path, PathBuf};

/// `staging/<key>/shard-00007.parquet`: a finished shard, kept until the
/// stage commits.
pub fn shard_file(stage_dir: &Path, index: u32) -> PathBuf {
    stage_dir.join(format!("shard-{index:05}.parquet"))
}

/// The rows `[start, end)` that shard `index` of `count` owns out of `rows`:
/// contiguous, in order, sizes differing by at most one.
pub fn shard_range(rows: usize, index: u32, count: u32) -> (usize, usize) {
    let (i, n) = (index as usize, count.max(1) as usize);
    (rows * i / n, rows * (i + 1) / n)
}

/// Parses `I/N`.
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("--shard {s}: expected I/N"))?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| format!("--shard {s}: `{i}` is not a number"))?,
        n.trim().parse().map_err(|_| format!("--shard {s}: `{n}` is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("--shard {s}: need 0 <= I < N"));
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_rows_into_contiguous_ranges() {
        let ranges: Vec<_> = (0..3).map(|i| shard_range(10, i, 3)).collect();
        assert_eq!(ranges, [(0, 3), (3, 6), (6, 10)]);
        assert_eq!(shard_range(2, 2, 4), (1, 1));
        assert_eq!(shard_range(7, 0, 1), (0, 7));
    }

    #[test]
    fn a_shard_is_i_of_n() {
        assert_eq!(parse_shard("3/8"), Ok((3, 8)));
        assert!(parse_shard("8/8").is_err());
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("x/2").unwrap_err().contains("`x` is not a number"));
    }
}
