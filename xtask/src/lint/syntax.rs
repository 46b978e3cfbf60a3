//! Each command as the shell will parse it: an unterminated quote, `$(`, backquote or heredoc, or
//! an `if`/`for`/`while`/`case`/`{`/`(` that never closes (or a closer that opens nothing) makes
//! the command fail at run time with a syntax error. This is a small tokenizer, not a shell: it
//! only answers "does every construct that opens also close", and is tested against a corpus of
//! tricky but valid commands (heredocs, nested quotes, `$(...)` in strings, `case` patterns,
//! line continuations) that must stay clean.

/// A syntax problem: what, and the byte offset in the command where the unclosed construct
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub offset: usize,
}

/// What is open at a point of the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// `if` … `fi`
    If,
    /// `for`/`while`/`until`/`select` … `done`
    Loop,
    /// `case` … `esac`
    Case,
    /// `{` … `}`
    Brace,
    /// `(` … `)` (a subshell)
    Paren,
}

impl Open {
    fn name(self) -> &'static str {
        match self {
            Open::If => "`if` without `fi`",
            Open::Loop => "a loop without `done`",
            Open::Case => "`case` without `esac`",
            Open::Brace => "`{` without `}`",
            Open::Paren => "`(` without `)`",
        }
    }
}

/// The first syntax problem of `text` (one buildspec command, possibly many lines), if any.
pub fn check(text: &str) -> Option<Problem> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        i: 0,
        stack: Vec::new(),
        at_command: true,
        heredocs: Vec::new(),
    };
    scanner.run(0).err()
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
    stack: Vec<(Open, usize)>,
    /// Whether the next word is in command position (where keywords count).
    at_command: bool,
    /// Heredocs whose bodies start at the next newline: `(delimiter, strip tabs, offset)`.
    heredocs: Vec<(String, bool, usize)>,
}

type Scan = Result<(), Problem>;

fn problem(message: impl Into<String>, offset: usize) -> Problem {
    Problem {
        message: message.into(),
        offset,
    }
}

impl Scanner<'_> {
    /// Scans to the end (depth 0) or to the `)` closing a `$(` (depth > 0).
    fn run(&mut self, depth: usize) -> Scan {
        let base = self.stack.len();
        while self.i < self.bytes.len() {
            let c = self.bytes[self.i];
            match c {
                b')' if depth > 0 && self.stack.len() == base => {
                    self.i += 1;
                    return Ok(());
                }
                b'\'' => self.single_quoted()?,
                b'"' => self.double_quoted()?,
                b'`' => self.backquoted()?,
                b'\\' => self.skip_escaped(),
                b'$' => self.dollar()?,
                b'#' if self.word_start() => self.comment(),
                b'\n' => {
                    self.i += 1;
                    self.heredoc_bodies()?;
                    self.at_command = true;
                }
                b';' | b'&' | b'|' => {
                    self.i += 1;
                    self.at_command = true;
                }
                b'<' if self.bytes.get(self.i + 1) == Some(&b'<') => self.heredoc_operator()?,
                b'<' | b'>' if self.bytes.get(self.i + 1) == Some(&b'(') => {
                    // Process substitution (bash; BS207 says so under sh).
                    self.i += 1;
                    self.balanced_parens("`<(` without `)`")?;
                }
                b'(' => self.open_paren()?,
                b')' => self.close(Open::Paren, ")")?,
                b' ' | b'\t' | b'\r' => self.i += 1,
                _ => self.word()?,
            }
        }
        if depth > 0 {
            return Err(problem("`$(` without `)`", 0));
        }
        if let Some((delimiter, _, at)) = self.heredocs.first() {
            return Err(problem(
                format!("the heredoc `<<{delimiter}` never ends (no line `{delimiter}`)"),
                *at,
            ));
        }
        match self.stack.last() {
            Some((open, at)) => Err(problem(open.name(), *at)),
            None => Ok(()),
        }
    }

    /// Past a backslash and the character it escapes (whole: it may be more than one byte).
    fn skip_escaped(&mut self) {
        self.i += 1;
        if let Some(c) = self.text.get(self.i..).and_then(|rest| rest.chars().next()) {
            self.i += c.len_utf8();
        }
    }

    fn word_start(&self) -> bool {
        self.i == 0
            || matches!(
                self.bytes[self.i - 1],
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')'
            )
    }

    fn comment(&mut self) {
        while self.i < self.bytes.len() && self.bytes[self.i] != b'\n' {
            self.i += 1;
        }
    }

    fn single_quoted(&mut self) -> Scan {
        let start = self.i;
        match self.text[start + 1..].find('\'') {
            Some(end) => {
                self.i = start + 1 + end + 1;
                self.at_command = false;
                Ok(())
            }
            None => Err(problem("an unterminated single quote (')", start)),
        }
    }

    fn double_quoted(&mut self) -> Scan {
        let start = self.i;
        self.i += 1;
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b'"' => {
                    self.i += 1;
                    self.at_command = false;
                    return Ok(());
                }
                b'\\' => self.skip_escaped(),
                b'`' => self.backquoted()?,
                b'$' => self.dollar()?,
                _ => self.i += 1,
            }
        }
        Err(problem("an unterminated double quote (\")", start))
    }

    fn backquoted(&mut self) -> Scan {
        let start = self.i;
        self.i += 1;
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b'`' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => self.skip_escaped(),
                _ => self.i += 1,
            }
        }
        Err(problem("an unterminated backquote (`)", start))
    }

    /// `$(…)`, `$((…))`, `${…}`, `$'…'`, or a plain `$`.
    fn dollar(&mut self) -> Scan {
        let start = self.i;
        match self.bytes.get(self.i + 1) {
            Some(b'(') if self.bytes.get(self.i + 2) == Some(&b'(') => {
                self.i += 1;
                self.balanced_parens("`$((` without `))`")
            }
            Some(b'(') => {
                self.i += 2;
                let saved = (std::mem::take(&mut self.stack), self.at_command);
                self.at_command = true;
                let inner = self.run(1);
                self.stack = saved.0;
                self.at_command = saved.1;
                inner.map_err(|p| match p.offset {
                    0 => problem("`$(` without `)`", start),
                    _ => p,
                })
            }
            Some(b'{') => {
                let end = self.text[start..].find('}');
                match end {
                    Some(end) => {
                        self.i = start + end + 1;
                        Ok(())
                    }
                    None => Err(problem("`${` without `}`", start)),
                }
            }
            Some(b'\'') => {
                self.i += 2;
                while self.i < self.bytes.len() {
                    match self.bytes[self.i] {
                        b'\'' => {
                            self.i += 1;
                            return Ok(());
                        }
                        b'\\' => self.skip_escaped(),
                        _ => self.i += 1,
                    }
                }
                Err(problem("an unterminated $'…' quote", start))
            }
            _ => {
                self.i += 1;
                Ok(())
            }
        }
    }

    /// A `(` opens a subshell (`((` arithmetic at the start of a command); inside a word (`f()`,
    /// `a=(1 2)`) it is part of that word.
    fn open_paren(&mut self) -> Scan {
        if self.in_case() {
            // `case` patterns (`a|b)`) and their parentheses are not subshells.
            self.i += 1;
            return Ok(());
        }
        if self.at_command && self.bytes.get(self.i + 1) == Some(&b'(') {
            return self.balanced_parens("`((` without `))`");
        }
        self.stack.push((Open::Paren, self.i));
        self.i += 1;
        self.at_command = true;
        Ok(())
    }

    /// Arithmetic (`((…))`, `$((…))`), process substitution (`<(…)`): parentheses that must
    /// balance, from the `(` at the current position.
    fn balanced_parens(&mut self, unclosed: &str) -> Scan {
        let start = self.i;
        let mut depth = 0usize;
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        self.at_command = false;
                        return Ok(());
                    }
                }
                b'\\' => {
                    self.skip_escaped();
                    continue;
                }
                b'\'' => {
                    self.single_quoted()?;
                    continue;
                }
                b'"' => {
                    self.double_quoted()?;
                    continue;
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(problem(unclosed, start))
    }

    fn in_case(&self) -> bool {
        matches!(self.stack.last(), Some((Open::Case, _)))
    }

    /// A closer: it must close what is open (inside `case`, `)` ends a pattern).
    fn close(&mut self, what: Open, word: &str) -> Scan {
        let at = self.i;
        self.i += word.len();
        if what == Open::Paren && self.in_case() {
            self.at_command = true;
            return Ok(());
        }
        match self.stack.last() {
            Some((open, _)) if *open == what => {
                self.stack.pop();
                self.at_command = false;
                Ok(())
            }
            _ => Err(problem(format!("`{word}` closes nothing that is open"), at)),
        }
    }

    /// A word: a keyword where a command starts, else anything up to a separator.
    fn word(&mut self) -> Scan {
        let start = self.i;
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b')' => break,
                b'(' if self.i > start => self.word_paren()?,
                b'\'' => self.single_quoted()?,
                b'"' => self.double_quoted()?,
                b'`' => self.backquoted()?,
                b'\\' => self.skip_escaped(),
                b'$' => self.dollar()?,
                _ => self.i += 1,
            }
        }
        let end = self.i.min(self.text.len());
        let text = &self.text[start..end];
        if self.at_command {
            self.keyword(text, start)?;
        }
        if self.at_command && end > start {
            self.at_command = is_prefix_keyword(text);
        }
        // `f()` defines a function: its body (`{ …; }`) is where a command starts.
        if text.ends_with("()") {
            self.at_command = true;
        }
        // `>` and `<` redirections: their target is not a command.
        if self.i < self.bytes.len() && matches!(self.bytes[self.i], b'<' | b'>') {
            self.i += 1;
        }
        Ok(())
    }

    /// `f()` or `a=(1 2 3)`: a parenthesis inside a word, closed in the same word.
    fn word_paren(&mut self) -> Scan {
        let start = self.i;
        let mut depth = 0usize;
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                b'\'' => {
                    self.single_quoted()?;
                    continue;
                }
                b'"' => {
                    self.double_quoted()?;
                    continue;
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(problem("`(` without `)`", start))
    }

    fn keyword(&mut self, word: &str, at: usize) -> Scan {
        match word {
            "if" => self.stack.push((Open::If, at)),
            "for" | "while" | "until" | "select" => self.stack.push((Open::Loop, at)),
            "case" => self.stack.push((Open::Case, at)),
            "{" => self.stack.push((Open::Brace, at)),
            "fi" => return self.closed(Open::If, "fi", at),
            "done" => return self.closed(Open::Loop, "done", at),
            "esac" => return self.closed(Open::Case, "esac", at),
            "}" => return self.closed(Open::Brace, "}", at),
            _ => {}
        }
        Ok(())
    }

    fn closed(&mut self, what: Open, word: &str, at: usize) -> Scan {
        match self.stack.last() {
            Some((open, _)) if *open == what => {
                self.stack.pop();
                Ok(())
            }
            _ => Err(problem(format!("`{word}` closes nothing that is open"), at)),
        }
    }

    /// `<<WORD`, `<<-WORD`, `<<'WORD'`, `<<"WORD"`: the body starts at the next newline. `<<<` is
    /// a here-string.
    fn heredoc_operator(&mut self) -> Scan {
        let at = self.i;
        self.i += 2;
        if self.bytes.get(self.i) == Some(&b'<') {
            self.i += 1;
            return Ok(());
        }
        let strip = self.bytes.get(self.i) == Some(&b'-');
        if strip {
            self.i += 1;
        }
        while matches!(self.bytes.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        let mut delimiter = String::new();
        while self.i < self.bytes.len() {
            match self.bytes[self.i] {
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
                b'\'' | b'"' => {}
                b'\\' => {}
                other => delimiter.push(char::from(other)),
            }
            self.i += 1;
        }
        if delimiter.is_empty() {
            return Err(problem("`<<` without a heredoc delimiter", at));
        }
        self.heredocs.push((delimiter, strip, at));
        Ok(())
    }

    /// After a newline: the bodies of the heredocs opened on the line just ended.
    fn heredoc_bodies(&mut self) -> Scan {
        let pending = std::mem::take(&mut self.heredocs);
        for (delimiter, strip, at) in pending {
            loop {
                if self.i >= self.bytes.len() {
                    return Err(problem(
                        format!("the heredoc `<<{delimiter}` never ends (no line `{delimiter}`)"),
                        at,
                    ));
                }
                let end = self.text[self.i..]
                    .find('\n')
                    .map_or(self.text.len(), |j| self.i + j);
                let line = &self.text[self.i..end];
                let line = if strip {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                self.i = (end + 1).min(self.text.len().max(end));
                if line == delimiter {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Words after which the next word is still in command position.
fn is_prefix_keyword(word: &str) -> bool {
    matches!(
        word,
        "if" | "then"
            | "else"
            | "elif"
            | "do"
            | "while"
            | "until"
            | "!"
            | "time"
            | "{"
            | "fi"
            | "done"
            | "}"
            | "esac"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tricky but valid: each must stay clean.
    const VALID: &[&str] = &[
        "echo 'it''s' \"a \\\"quoted\\\" word\" $(echo \"$(date)\")",
        "if [ -f x ]; then echo y; elif true; then :; else echo n; fi",
        "for f in *.py; do\n  echo \"$f\"\ndone",
        "while read -r line; do echo \"$line\"; done < file.txt",
        "case \"$1\" in\n  a|b) echo ab ;;\n  (c) echo c ;;\n  *) echo other ;;\nesac",
        "cat <<EOF > out.txt\nhello $USER\n  if without fi in a heredoc\nEOF",
        "cat <<-'EOF'\n\tliteral $x ( ' \"\n\tEOF",
        "python3 - <<'PY'\nprint(\"(\")\nPY\necho after",
        "f() { echo in f; }; f",
        "arr=(1 2 3); echo \"${arr[@]}\"",
        "echo $((1 + (2 * 3)))",
        "(( i = i + 1 )); echo $i",
        "diff <(sort a) <(sort b) > /dev/null",
        "x=`echo \\`nested\\``",
        "echo a \\\n  b \\\n  c",
        "echo \"${VAR:-default}\" ${#VAR} $# # a comment with ' and (",
        "[ \"$A\" = 'b' ] && { echo one; echo two; } || echo three",
        "(cd sub && make)",
        "echo $'tab\\there'",
        "grep -E '^(a|b)$' file",
        "test -n \"$(ls | grep -c ')')\"",
        "sam build --use-container; echo \"done: $?\"",
        "cat <<< \"here string\"",
        "echo done",
        "echo fi",
        "for i in 1 2; do case $i in 1) echo one;; esac; done",
        "url=http://a/b#frag; echo $url",
        "echo caf\\é \\€ 'é' \"€\"",
    ];

    #[test]
    fn tricky_but_valid_commands_are_clean() {
        for command in VALID {
            assert_eq!(check(command), None, "{command}");
        }
    }

    #[test]
    fn what_the_shell_refuses_is_found() {
        let cases: &[(&str, &str, usize)] = &[
            ("echo 'unterminated", "single quote", 5),
            ("echo \"unterminated $x", "double quote", 5),
            ("echo $(date", "`$(` without `)`", 5),
            ("if [ -f x ]; then echo y", "`if` without `fi`", 0),
            ("for f in *; do echo $f", "without `done`", 0),
            ("case $x in a) ;;", "`case` without `esac`", 0),
            ("cat <<EOF\nbody\n", "never ends", 4),
            ("echo a; fi", "`fi` closes nothing", 8),
            ("{ echo a", "`{` without `}`", 0),
            ("(cd x && make", "`(` without `)`", 0),
            ("echo `date", "backquote", 5),
        ];
        for (command, expected, offset) in cases {
            let found = check(command).unwrap_or_else(|| panic!("nothing found in {command:?}"));
            assert!(found.message.contains(expected), "{command:?}: {found:?}");
            assert_eq!(found.offset, *offset, "{command:?}: {found:?}");
        }
    }
}
