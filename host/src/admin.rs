//! The admin socket: a Unix socket taking one command per connection
//! (`reload`, `status`) and answering one line.

use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand {
    /// Re-read the configuration file and reload the plugins.
    Reload,
    Status,
}

impl AdminCommand {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "reload" => Ok(AdminCommand::Reload),
            "status" => Ok(AdminCommand::Status),
            other => Err(format!("unknown command {other:?} (try: reload, status)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Reload => "reload",
            AdminCommand::Status => "status",
        }
    }
}

pub type AdminRequest = (AdminCommand, oneshot::Sender<String>);

/// Listen on `path` (replacing a stale socket, never another kind of file)
/// and pass commands on.
pub fn serve(path: &Path, requests: mpsc::Sender<AdminRequest>) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, requests.clone()));
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, requests: mpsc::Sender<AdminRequest>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(1024));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match AdminCommand::parse(&line) {
        Ok(cmd) => {
            let (tx, rx) = oneshot::channel();
            if requests.send((cmd, tx)).await.is_err() {
                "error: host is stopping".to_string()
            } else {
                rx.await.unwrap_or_else(|_| "error: no answer".into())
            }
        }
        Err(e) => format!("error: {e}"),
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

/// Send one command to a running host and return its answer.
pub async fn request(path: &PathBuf, cmd: AdminCommand) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path).await?;
    stream
        .write_all(format!("{}\n", cmd.as_str()).as_bytes())
        .await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(reply.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(AdminCommand::parse("reload\n"), Ok(AdminCommand::Reload));
        assert_eq!(AdminCommand::parse(" status "), Ok(AdminCommand::Status));
        assert!(AdminCommand::parse("rm -rf")
            .unwrap_err()
            .contains("unknown command"));
    }

    #[tokio::test]
    async fn socket_round_trip() {
        let path =
            std::env::temp_dir().join(format!("escalator-admin-test-{}.sock", std::process::id()));
        let (tx, mut rx) = mpsc::channel(1);
        serve(&path, tx).unwrap();
        tokio::spawn(async move {
            while let Some((cmd, reply)) = rx.recv().await {
                let _ = reply.send(format!("did {}", cmd.as_str()));
            }
        });
        assert_eq!(
            request(&path, AdminCommand::Status).await.unwrap(),
            "did status"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn refuses_to_replace_a_regular_file() {
        let path =
            std::env::temp_dir().join(format!("escalator-admin-file-{}", std::process::id()));
        std::fs::write(&path, "precious").unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let e = serve(&path, tx).unwrap_err();
        assert!(e.to_string().contains("not a socket"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        let _ = std::fs::remove_file(&path);
    }
}
