//! Quoting for bash: what the job scripts, command templates, test
//! commands and the editor's helper commands put on a command line.

/// Quotes a value for bash (`{{ inputs.x | quote }}`), for paths or
/// parameters that may hold spaces or shell syntax.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_makes_any_value_one_shell_word() {
        assert_eq!(shell_quote("/a/b.parquet"), "/a/b.parquet");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("x'; echo $HOME \"y")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'; echo $HOME \"y");
    }
}
