//! The build's Docker verbs against a real daemon and the stand-in image: a long-lived build
//! container, tar upload, exec with streamed output and exit codes, `run-as`, streaming download,
//! cache volumes, pull failures and clean-up.
//!
//! Needs a Docker daemon and the image `LAYER_BUILD_IMAGE`; `bash scripts/test.sh` provides both.

use crate::support;

use std::collections::BTreeMap;
use std::io::Read;

use xtask::engine::{ContainerSpec, Engine, Error, Exec, WorkContainer};

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

async fn build_container(engine: &Engine, image: &str) -> WorkContainer {
    let spec = ContainerSpec {
        image: image.to_string(),
        env: vec![("CODEBUILD_BUILD_ID".to_string(), "local:1".to_string())],
        working_dir: Some("/".to_string()),
        ..Default::default()
    };
    engine
        .start_work_container(&spec)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `script` with `sh -c` and returns its exit code and combined output.
async fn sh(
    engine: &Engine,
    container: &WorkContainer,
    user: Option<&str>,
    script: &str,
) -> (i64, String) {
    let mut output = Vec::new();
    let exec = Exec::sh(script, &[]);
    let exec = match user {
        Some(user) => exec.user(user),
        None => exec,
    };
    let code = engine
        .exec(container, &exec, |_, chunk| output.extend_from_slice(chunk))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    (code, String::from_utf8_lossy(&output).into_owned())
}

/// A tar archive of `(path, contents)` regular files.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .unwrap_or_else(|error| panic!("{error}"));
    }
    builder
        .into_inner()
        .unwrap_or_else(|error| panic!("{error}"))
}

async fn assert_no_leftovers(engine: &Engine) {
    let leftovers = engine
        .session_containers()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        leftovers.is_empty(),
        "containers left behind: {leftovers:?}"
    );
}

#[test]
fn uploaded_sources_are_run_with_streamed_output_and_exit_code() {
    support::with_docker(async |engine, image| {
        let container = build_container(engine, image).await;
        let src = "/codebuild/output/src1/src";
        let tar = tar_of(&[("a.txt", "hello from a\n"), ("sub/b.txt", "bee\n")]);
        engine
            .upload(&container, src, tar)
            .await
            .unwrap_or_else(|error| panic!("{error}"));

        let mut chunks = Vec::new();
        let code = engine
            .exec(
                &container,
                &Exec::sh(
                    "cd /codebuild/output/src1/src && cat a.txt && echo err >&2 && exit 3",
                    &[],
                )
                .env("EXTRA", "1"),
                |_, chunk| chunks.push(chunk.to_vec()),
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let output = String::from_utf8_lossy(&chunks.concat()).into_owned();
        assert_eq!(code, 3, "output: {output}");
        assert!(output.contains("hello from a"), "no stdout in {output:?}");
        assert!(output.contains("err"), "no stderr in {output:?}");

        let (code, output) = sh(
            engine,
            &container,
            None,
            "cat /codebuild/output/src1/src/sub/b.txt; echo $CODEBUILD_BUILD_ID; pwd",
        )
        .await;
        assert_eq!((code, output.as_str()), (0, "bee\nlocal:1\n/\n"));

        container
            .remove()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn commands_run_as_another_user_in_another_directory() {
    support::with_docker(async |engine, image| {
        let container = build_container(engine, image).await;
        let (code, output) = sh(engine, &container, Some("nobody"), "id -un").await;
        assert_eq!((code, output.as_str()), (0, "nobody\n"));

        let mut output = Vec::new();
        let code = engine
            .exec(
                &container,
                &Exec::new(["pwd"]).working_dir("/tmp"),
                |_, chunk| output.extend_from_slice(chunk),
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!((code, output.as_slice()), (0, b"/tmp\n".as_slice()));

        drop(container);
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn a_directory_is_downloaded_as_a_streamed_tar() {
    support::with_docker(async |engine, image| {
        let container = build_container(engine, image).await;
        // Big enough to span many chunks of the stream.
        let script = "mkdir -p /out/python/pkg && echo one > /out/python/one.txt \
                      && head -c 1000000 /dev/zero > /out/python/pkg/zeros.bin";
        assert_eq!(sh(engine, &container, None, script).await.0, 0);

        let reader = engine
            .download(&container, "/out/python")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let entries = tokio::task::spawn_blocking(move || {
            let mut entries = BTreeMap::new();
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().unwrap_or_else(|error| panic!("{error}")) {
                let mut entry = entry.unwrap_or_else(|error| panic!("{error}"));
                let name = entry
                    .path()
                    .unwrap_or_else(|error| panic!("{error}"))
                    .display()
                    .to_string();
                let mut contents = Vec::new();
                entry
                    .read_to_end(&mut contents)
                    .unwrap_or_else(|error| panic!("{error}"));
                entries.insert(name, contents);
            }
            entries
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));

        let names: Vec<&str> = entries
            .keys()
            .map(|name| name.trim_end_matches('/'))
            .collect();
        assert_eq!(
            names,
            [
                "python",
                "python/one.txt",
                "python/pkg",
                "python/pkg/zeros.bin"
            ]
        );
        assert_eq!(entries["python/one.txt"], b"one\n");
        assert_eq!(entries["python/pkg/zeros.bin"], vec![0; 1_000_000]);

        match engine.download(&container, "/no/such/path").await {
            Err(error @ Error::NoSuchPath { .. }) => {
                assert!(error.to_string().contains("/no/such/path"), "{error}")
            }
            other => panic!("expected Error::NoSuchPath, got {other:?}"),
        }

        container
            .remove()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn a_named_volume_keeps_files_between_containers() {
    support::with_docker(async |engine, image| {
        let volume = format!("xtask-test-cache-{}", uuid::Uuid::new_v4());
        let spec = ContainerSpec {
            image: image.to_string(),
            volumes: vec![(volume.clone(), "/root/.cache/pip".to_string())],
            ..Default::default()
        };

        let first = engine
            .start_work_container(&spec)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let write = "echo cached > /root/.cache/pip/marker";
        assert_eq!(sh(engine, &first, None, write).await.0, 0);
        first
            .remove()
            .await
            .unwrap_or_else(|error| panic!("{error}"));

        let second = engine
            .start_work_container(&spec)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let read = sh(engine, &second, None, "cat /root/.cache/pip/marker").await;
        second
            .remove()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        engine
            .remove_volume(&volume)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(read, (0, "cached\n".to_string()));
        // Removing it again is not an error.
        engine
            .remove_volume(&volume)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn the_docker_socket_is_never_mounted() {
    support::with_docker(async |engine, image| {
        let spec = ContainerSpec {
            image: image.to_string(),
            bind_mounts_ro: vec![(
                "/var/run/docker.sock".to_string(),
                "/var/run/docker.sock".to_string(),
            )],
            ..Default::default()
        };
        match engine.start_work_container(&spec).await {
            Err(Error::RefusedMount { .. }) => {}
            other => panic!("expected Error::RefusedMount, got {other:?}"),
        }
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn a_failed_pull_names_the_offline_stand_in() {
    support::with_daemon(async |engine| {
        // Loopback port 9 (discard): nothing listens, no traffic leaves the machine.
        let image = "127.0.0.1:9/nope/nope:latest";
        let mut messages = Vec::new();
        let result = engine
            .ensure_image(image, None, |progress| messages.push(progress))
            .await;
        let Err(error @ Error::Pull { .. }) = result else {
            panic!("expected Error::Pull, got {result:?} after {messages:?}");
        };
        let message = error.to_string();
        assert!(
            message.contains("bash scripts/standin-image.sh"),
            "{message}"
        );
        assert!(message.contains("LAYER_BUILD_IMAGE"), "{message}");
        assert!(message.contains(image), "{message}");
        assert!(!message.contains('\n'), "not one line: {message}");
    });
}

#[test]
fn session_containers_are_removed_in_one_call() {
    support::with_docker(async |engine, image| {
        let first = build_container(engine, image).await;
        let second = build_container(engine, image).await;
        let removed = engine
            .remove_session_containers()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(removed, 2);
        assert_no_leftovers(engine).await;
        // The guards find their containers gone, which is fine.
        drop((first, second));
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn scratch_dirs_are_volumes_of_their_own_removed_with_the_container() {
    support::with_docker(async |engine, image| {
        let spec = ContainerSpec {
            image: image.to_string(),
            working_dir: Some("/".to_string()),
            scratch_dirs: strings(&["/codebuild/output", "/tmp"]),
            ..Default::default()
        };
        let container = engine
            .start_work_container(&spec)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let (code, mounts) = sh(engine, &container, None, "cut -d' ' -f2 /proc/mounts").await;
        assert_eq!(code, 0);
        for dir in ["/codebuild/output", "/tmp"] {
            assert!(
                mounts.lines().any(|m| m == dir),
                "{dir} is no mount: {mounts}"
            );
        }
        // /tmp keeps the image's permissions (sticky, world-writable) for every build user.
        let (_, mode) = sh(engine, &container, None, "stat -c %a /tmp").await;
        assert_eq!(mode.trim(), "1777");
        // The archive API reads and writes inside them (the source upload, the artifacts).
        engine
            .upload(
                &container,
                "/codebuild/output/src1/src",
                tar_of(&[("a.txt", "A\n")]),
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let (code, out) = sh(
            engine,
            &container,
            None,
            "cat /codebuild/output/src1/src/a.txt",
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "A\n"));
        let reader = engine
            .download(&container, "/codebuild/output/src1/src/a.txt")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let names = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(reader);
            let entries = archive.entries().unwrap_or_else(|error| panic!("{error}"));
            entries
                .map(|entry| {
                    entry
                        .unwrap_or_else(|error| panic!("{error}"))
                        .path_bytes()
                        .to_vec()
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(names, [b"a.txt".to_vec()]);

        let docker = bollard::Docker::connect_with_defaults().unwrap_or_else(|e| panic!("{e}"));
        let inspected = docker
            .inspect_container(container.id(), None)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let volumes: Vec<String> = inspected
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mount| mount.name)
            .collect();
        assert_eq!(volumes.len(), 2, "{volumes:?}");
        container
            .remove_in_background()
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|error| panic!("{error}"));
        for volume in volumes {
            match docker.inspect_volume(&volume).await {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                other => panic!("volume {volume} outlived its container: {other:?}"),
            }
        }
        assert_no_leftovers(engine).await;
    });
}

/// The names and contents of the entries of a downloaded tar.
async fn download_entries(
    engine: &Engine,
    container: &WorkContainer,
    path: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let reader = engine
        .download(container, path)
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let mut entries = BTreeMap::new();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut contents = Vec::new();
            entry
                .read_to_end(&mut contents)
                .map_err(|e| e.to_string())?;
            entries.insert(name, contents);
        }
        Ok(entries)
    })
    .await
    .map_err(|e| e.to_string())?
}

#[test]
fn files_move_in_and_out_of_an_in_memory_dir_through_tar() {
    support::with_docker(async |engine, image| {
        let spec = ContainerSpec {
            image: image.to_string(),
            working_dir: Some("/".to_string()),
            memory_dirs: vec![("/codebuild/output".to_string(), 64 << 20)],
            ..Default::default()
        };
        let container = engine
            .start_work_container(&spec)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let (_, mounts) = sh(
            engine,
            &container,
            None,
            "grep ' /codebuild/output ' /proc/mounts",
        )
        .await;
        assert!(mounts.contains(" tmpfs "), "{mounts}");

        // Bigger than one chunk of the stream, with a nested directory and an executable.
        let big = "x".repeat(300_000);
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents, mode) in [
            ("a.txt", "A\n", 0o644),
            ("pkg/big.txt", big.as_str(), 0o644),
            ("run.sh", "#!/bin/sh\necho ran\n", 0o755),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(mode);
            header.set_uid(4242);
            header.set_cksum();
            builder
                .append_data(&mut header, path, contents.as_bytes())
                .unwrap_or_else(|error| panic!("{error}"));
        }
        let tar = builder
            .into_inner()
            .unwrap_or_else(|error| panic!("{error}"));
        engine
            .upload(&container, "/codebuild/output/src1/src", tar)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let script =
            "cd /codebuild/output/src1/src && ./run.sh && stat -c '%u %a %s' a.txt pkg/big.txt";
        let (code, out) = sh(engine, &container, None, script).await;
        assert_eq!((code, out.as_str()), (0, "ran\n0 644 2\n0 644 300000\n"));

        // `dir/.` is the directory's contents; another path is named after its last component.
        let entries = download_entries(engine, &container, "/codebuild/output/src1/src/.")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let files: Vec<&str> = entries
            .keys()
            .map(|name| name.trim_start_matches("./"))
            .filter(|name| !name.is_empty() && !name.ends_with('/'))
            .collect();
        assert_eq!(files, ["a.txt", "pkg/big.txt", "run.sh"]);
        assert_eq!(entries["./pkg/big.txt"], big.as_bytes());
        let one = download_entries(engine, &container, "/codebuild/output/src1/src/a.txt")
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(one.keys().collect::<Vec<_>>(), ["a.txt"]);

        match engine
            .download(&container, "/codebuild/output/src1/src/missing")
            .await
        {
            Err(error @ Error::NoSuchPath { .. }) => {
                assert!(error.to_string().contains("missing"), "{error}")
            }
            other => panic!("expected Error::NoSuchPath, got {other:?}"),
        }
        // A tar that is not one fails the upload with tar's own message.
        match engine
            .upload(
                &container,
                "/codebuild/output/x",
                b"not a tar archive".to_vec(),
            )
            .await
        {
            Err(error @ Error::Upload { .. }) => {
                assert!(error.to_string().contains("tar -x"), "{error}")
            }
            other => panic!("expected Error::Upload, got {other:?}"),
        }

        container
            .remove()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_no_leftovers(engine).await;
    });
}

#[test]
fn paths_in_an_image_are_found_without_starting_it() {
    support::with_docker(async |engine, image| {
        let paths = strings(&["/usr/bin", "/etc/ssl", "/no/such/dir"]);
        let found = engine
            .paths_in_image(image, &paths)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(found, [true, true, false]);
        assert_no_leftovers(engine).await;
    });
}
