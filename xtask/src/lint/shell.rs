//! Just enough shell lexing to find the command words of a buildspec command: quotes, escapes,
//! `$(...)`, comments and the operators that separate simple commands. Not a shell parser: the
//! checks built on it look for specific, well-known patterns.

/// A word with its byte offset in the command text (quotes removed from `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub offset: usize,
}

/// One simple command (`a b c`) between operators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleCommand {
    pub words: Vec<Word>,
    /// Its output goes into a pipe (`yes | ...`).
    pub piped_out: bool,
    /// It reads from a pipe.
    pub piped_in: bool,
}

/// Reserved words that may precede the command word.
const PREFIX_KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "(",
];

impl SimpleCommand {
    /// The words from the command word on: keywords and `VAR=value` assignments skipped.
    pub fn command(&self) -> &[Word] {
        let start = self
            .words
            .iter()
            .position(|w| !PREFIX_KEYWORDS.contains(&w.text.as_str()) && !is_assignment(&w.text))
            .unwrap_or(self.words.len());
        &self.words[start..]
    }

    pub fn name(&self) -> Option<&str> {
        self.command().first().map(|w| w.text.as_str())
    }

    /// True when any argument is one of `flags`, or a short-flag cluster containing `short`.
    pub fn has_flag(&self, flags: &[&str], short: Option<char>) -> bool {
        self.command().iter().skip(1).any(|w| {
            let t = w.text.as_str();
            flags.contains(&t)
                || short.is_some_and(|c| {
                    t.starts_with('-') && !t.starts_with("--") && t[1..].contains(c)
                })
        })
    }
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Splits a command (possibly many lines) into simple commands.
pub fn simple_commands(text: &str) -> Vec<SimpleCommand> {
    let mut lexer = Lexer::default();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' => {
                lexer.start_word(i);
                let end = text[i + 1..].find('\'').map_or(text.len(), |j| i + 1 + j);
                lexer.word.push_str(&text[i + 1..end]);
                i = end + 1;
                continue;
            }
            b'"' => {
                lexer.start_word(i);
                i = lexer.double_quoted(text, i + 1);
                continue;
            }
            b'\\' => {
                lexer.start_word(i);
                if let Some(next) = text[i + 1..].chars().next() {
                    if next != '\n' {
                        lexer.word.push(next);
                    }
                    i += 1 + next.len_utf8();
                } else {
                    i += 1;
                }
                continue;
            }
            b'$' if bytes.get(i + 1) == Some(&b'(') => {
                lexer.start_word(i);
                let end = matching_paren(text, i + 1);
                lexer.word.push_str(&text[i..end]);
                i = end;
                continue;
            }
            b'#' if lexer.start.is_none() => {
                i = text[i..].find('\n').map_or(text.len(), |j| i + j);
                continue;
            }
            b' ' | b'\t' | b'\r' => lexer.end_word(),
            b'\n' | b';' => lexer.end_command(false),
            b'|' => {
                let double = bytes.get(i + 1) == Some(&b'|');
                lexer.end_command(!double);
                if double {
                    i += 1;
                }
            }
            b'&' => {
                // `2>&1` and `&>` are redirections, not separators.
                let redirect = i > 0 && bytes[i - 1] == b'>' || bytes.get(i + 1) == Some(&b'>');
                if redirect {
                    lexer.start_word(i);
                    lexer.word.push('&');
                } else {
                    lexer.end_command(false);
                    if bytes.get(i + 1) == Some(&b'&') {
                        i += 1;
                    }
                }
            }
            _ => {
                lexer.start_word(i);
                let ch = text[i..].chars().next().unwrap_or(' ');
                lexer.word.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
        i += 1;
    }
    lexer.end_command(false);
    lexer.commands
}

/// The index just past the `)` matching the `(` at `open`.
fn matching_paren(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (j, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + j + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

#[derive(Default)]
struct Lexer {
    commands: Vec<SimpleCommand>,
    current: SimpleCommand,
    word: String,
    start: Option<usize>,
    next_piped_in: bool,
}

impl Lexer {
    fn start_word(&mut self, at: usize) {
        if self.start.is_none() {
            self.start = Some(at);
        }
    }

    fn end_word(&mut self) {
        if let Some(offset) = self.start.take() {
            let text = std::mem::take(&mut self.word);
            self.current.words.push(Word { text, offset });
        }
    }

    fn end_command(&mut self, piped_out: bool) {
        self.end_word();
        let mut command = std::mem::take(&mut self.current);
        command.piped_out = piped_out;
        command.piped_in = self.next_piped_in;
        self.next_piped_in = piped_out;
        if !command.words.is_empty() {
            self.commands.push(command);
        }
    }

    /// Consumes a double-quoted string starting after its `"`; returns the index after the closing one.
    fn double_quoted(&mut self, text: &str, mut i: usize) -> usize {
        while let Some(c) = text[i..].chars().next() {
            match c {
                '"' => return i + 1,
                '\\' => {
                    if let Some(next) = text[i + 1..].chars().next() {
                        self.word.push(next);
                        i += 1 + next.len_utf8();
                        continue;
                    }
                }
                _ => self.word.push(c),
            }
            i += c.len_utf8();
        }
        text.len()
    }
}

/// The text with single-quoted strings and comments blanked out (same length, same offsets), so
/// pattern checks do not fire on `echo '[[ x ]]'`.
pub fn mask_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_single = false;
    let mut in_comment = false;
    let mut prev = ' ';
    for c in text.chars() {
        let blank = if in_comment {
            if c == '\n' {
                in_comment = false;
            }
            c != '\n'
        } else if in_single {
            if c == '\'' {
                in_single = false;
            }
            true
        } else if c == '\'' {
            in_single = true;
            true
        } else if c == '#' && (prev.is_whitespace() || prev == ';') {
            in_comment = true;
            true
        } else {
            false
        };
        if blank {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        simple_commands(text)
            .iter()
            .filter_map(|c| c.name().map(str::to_string))
            .collect()
    }

    #[test]
    fn operators_separate_commands() {
        assert_eq!(
            names("a x && b || c; d | e & f\ng"),
            ["a", "b", "c", "d", "e", "f", "g"]
        );
    }

    #[test]
    fn quotes_and_substitutions_stay_in_one_word() {
        let cmds = simple_commands("echo \"a; b\" 'c | d' $(x; y) 2>&1");
        assert_eq!(cmds.len(), 1);
        let words: Vec<_> = cmds[0].words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["echo", "a; b", "c | d", "$(x; y)", "2>&1"]);
    }

    #[test]
    fn pipes_are_marked() {
        let cmds = simple_commands("yes | sam deploy");
        assert!(cmds[0].piped_out && !cmds[0].piped_in);
        assert!(cmds[1].piped_in);
    }

    #[test]
    fn keywords_and_assignments_are_skipped() {
        assert_eq!(
            names("if [ -f x ]; then FOO=1 make; fi"),
            ["[", "make", "fi"]
        );
        assert_eq!(
            names("while read -r l; do echo $l; done"),
            ["read", "echo", "done"]
        );
    }

    #[test]
    fn comments_are_ignored_and_offsets_kept() {
        let cmds = simple_commands("# setup\n  read name");
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].words[0].offset, 10);
    }

    #[test]
    fn flags_and_clusters() {
        let cmd = &simple_commands("apt-get install -qy zip")[0];
        assert!(cmd.has_flag(&["--yes"], Some('y')));
        let cmd = &simple_commands("apt-get install zip")[0];
        assert!(!cmd.has_flag(&["--yes"], Some('y')));
    }

    #[test]
    fn masking_keeps_offsets() {
        let text = "echo '[[ x ]]' # [[ y\n[[ z ]]";
        let masked = mask_literals(text);
        assert_eq!(masked.len(), text.len());
        assert_eq!(masked.matches("[[").count(), 1);
    }
}
