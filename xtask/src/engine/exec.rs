//! Commands in a running container: [`Exec`] says what to run and how, [`Engine::exec`] streams
//! its output, [`Engine::exec_output`] collects it (bounded), [`Engine::exec_checked`] also fails
//! on a non-zero exit.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Cause, Engine, Error, Result, WorkContainer};

/// How often, and how many times, to ask for an exec's exit code after its output has ended: the
/// daemon may close the stream a moment before it records the code.
const EXIT_CODE_POLL: Duration = Duration::from_millis(50);
const EXIT_CODE_POLLS: u32 = 200;
/// What [`Engine::exec_output`] keeps of each stream, from the end.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// A command to run in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exec {
    pub(super) cmd: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) user: Option<String>,
    pub(super) working_dir: Option<String>,
    pub(super) stdin: Option<Vec<u8>>,
}

impl Exec {
    /// `cmd` as argv: no shell in between.
    pub fn new<S: Into<String>>(cmd: impl IntoIterator<Item = S>) -> Exec {
        Exec {
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..Exec::default()
        }
    }

    /// `sh -c script sh args…`: the script sees `args` as `$1`, `$2`, … (never spliced into it).
    pub fn sh(script: &str, args: &[&str]) -> Exec {
        let mut cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        cmd.push("sh".to_string());
        cmd.extend(args.iter().map(|a| a.to_string()));
        Exec {
            cmd,
            ..Exec::default()
        }
    }

    /// Adds `NAME=value` to the container's environment for this command only. Values passed
    /// this way are not in the command line (`/proc/<pid>/cmdline`, the exec's inspect data).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Exec {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn envs(mut self, vars: &[(String, String)]) -> Exec {
        self.env.extend_from_slice(vars);
        self
    }

    /// Runs as `user`: a name or `uid[:gid]` the image knows.
    pub fn user(mut self, user: impl Into<String>) -> Exec {
        self.user = Some(user.into());
        self
    }

    pub fn root(self) -> Exec {
        self.user("0")
    }

    pub fn working_dir(mut self, dir: impl Into<String>) -> Exec {
        self.working_dir = Some(dir.into());
        self
    }

    /// Bytes written to the command's stdin, which is then closed.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Exec {
        self.stdin = Some(bytes);
        self
    }

    /// The command for messages: its first words, or a shell script's first line (shortened).
    pub fn describe(&self) -> String {
        const MAX_CHARS: usize = 60;
        let text = match self.cmd.as_slice() {
            [shell, flag, script, ..] if flag == "-c" => {
                format!("{shell} -c {}", script.lines().next().unwrap_or_default())
            }
            words => words.iter().take(4).cloned().collect::<Vec<_>>().join(" "),
        };
        match text.char_indices().nth(MAX_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text,
        }
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a finished command printed (each stream's last [`OUTPUT_LIMIT`] bytes) and its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// Both streams as text, stdout first.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.stderr));
        text
    }
}

/// A command started with its output attached.
pub(super) struct Started {
    pub id: String,
    pub output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl Engine {
    /// Runs `exec` in `container`, hands each chunk of output to `on_output` as it arrives, and
    /// returns the exit code.
    pub async fn exec(
        &self,
        container: &WorkContainer,
        exec: &Exec,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<i64> {
        let started = self.start_exec(container, exec).await?;
        let (mut output, mut input) = (started.output, started.input);
        let stdin = exec.stdin.clone();
        // `input` moves in, so it is closed (end of file for the command) even when a write fails.
        let send = async move {
            match stdin {
                Some(bytes) => {
                    input.write_all(&bytes).await?;
                    input.shutdown().await
                }
                None => Ok(()),
            }
        };
        let receive = async {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|cause| exec_error(container, exec, cause.into()))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        on_output(Stream::Stdout, &message)
                    }
                    LogOutput::StdErr { message } => on_output(Stream::Stderr, &message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok(())
        };
        let (sent, received) = tokio::join!(send, receive);
        received?;
        let code = exit_code(&self.docker, container.id(), &started.id).await?;
        match sent {
            // A command that exits without reading its input breaks the pipe: its code says more.
            Err(e) if code == 0 && exec.stdin.is_some() => Err(exec_error(
                container,
                exec,
                Cause::message(format!("its input could not be sent: {e}")),
            )),
            _ => Ok(code),
        }
    }

    /// [`Engine::exec`], collecting the output: the last [`OUTPUT_LIMIT`] bytes of each stream.
    pub async fn exec_output(&self, container: &WorkContainer, exec: &Exec) -> Result<Output> {
        let (mut stdout, mut stderr) = (Tail::default(), Tail::default());
        let code = self
            .exec(container, exec, |stream, chunk| match stream {
                Stream::Stdout => stdout.push(chunk),
                Stream::Stderr => stderr.push(chunk),
            })
            .await?;
        Ok(Output {
            code,
            stdout: stdout.0,
            stderr: stderr.0,
        })
    }

    /// [`Engine::exec_output`], failing with the command's output when it exits non-zero.
    pub async fn exec_checked(&self, container: &WorkContainer, exec: &Exec) -> Result<Output> {
        let output = self.exec_output(container, exec).await?;
        if output.code != 0 {
            let cause = Cause::Exit {
                command: exec.describe(),
                code: output.code,
                output: output.text(),
            };
            return Err(exec_error(container, exec, cause));
        }
        Ok(output)
    }

    /// Starts `exec` in `container` with its output (and stdin) attached.
    pub(super) async fn start_exec(
        &self,
        container: &WorkContainer,
        exec: &Exec,
    ) -> Result<Started> {
        let config = ExecConfig {
            attach_stdin: Some(exec.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(exec.cmd.clone()),
            env: Some(super::env_list(&exec.env)),
            user: exec.user.clone(),
            working_dir: exec.working_dir.clone(),
            ..Default::default()
        };
        let failed = |cause: bollard::errors::Error| exec_error(container, exec, cause.into());
        let created = self
            .docker
            .create_exec(container.id(), config)
            .await
            .map_err(failed)?;
        let started = self
            .docker
            .start_exec(&created.id, Some(StartExecOptions::default()))
            .await
            .map_err(failed)?;
        let StartExecResults::Attached { output, input } = started else {
            let cause = Cause::message("the daemon started the command detached");
            return Err(exec_error(container, exec, cause));
        };
        Ok(Started {
            id: created.id,
            output,
            input,
        })
    }
}

fn exec_error(container: &WorkContainer, exec: &Exec, cause: Cause) -> Error {
    Error::Exec {
        container: container.id().to_string(),
        command: exec.describe(),
        cause,
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(OUTPUT_LIMIT)..];
        let overflow = (self.0.len() + chunk.len()).saturating_sub(OUTPUT_LIMIT);
        self.0.drain(..overflow);
        self.0.extend_from_slice(chunk);
    }
}

/// The exit code of a command (`exec_id`) whose output has ended.
pub(super) async fn exit_code(docker: &Docker, container_id: &str, exec_id: &str) -> Result<i64> {
    let error = |cause: Cause| Error::Exec {
        container: container_id.to_string(),
        command: "(exit code)".to_string(),
        cause,
    };
    for _ in 0..EXIT_CODE_POLLS {
        let inspect = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| error(e.into()))?;
        match (inspect.running, inspect.exit_code) {
            (Some(true), _) | (_, None) => tokio::time::sleep(EXIT_CODE_POLL).await,
            (_, Some(code)) => return Ok(code),
        }
    }
    Err(error(Cause::message(
        "the command's output ended but the daemon reports no exit code",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(b"abc");
        tail.push(&vec![b'x'; OUTPUT_LIMIT]);
        tail.push(b"end");
        assert_eq!(tail.0.len(), OUTPUT_LIMIT);
        assert!(tail.0.ends_with(b"xend"));
    }

    #[test]
    fn sh_passes_arguments_apart_from_the_script() {
        let exec = Exec::sh(r#"test -e "$1""#, &["/a b"]).root();
        assert_eq!(exec.cmd, ["sh", "-c", r#"test -e "$1""#, "sh", "/a b"]);
        assert_eq!(exec.user.as_deref(), Some("0"));
        assert_eq!(exec.describe(), r#"sh -c test -e "$1""#);
        assert_eq!(
            Exec::new(["chown", "-R", "u", "/src"]).describe(),
            "chown -R u /src"
        );
    }
}
