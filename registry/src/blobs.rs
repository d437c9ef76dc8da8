//! Blob contents and the upload sessions that fill them, behind one trait
//! ([`BlobStore`]); the default keeps them on disk, content-addressed
//! ([`FsBlobStore`]). A blob exists only once its digest was verified.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No upload session with this id (in this repository).
    #[error("upload {0} is unknown")]
    UnknownUpload(String),
    /// The content does not hash to the digest the client gave.
    #[error("the content's digest is {actual}, not {expected}")]
    DigestMismatch {
        /// The digest the client gave.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A chunk does not start where the upload ends.
    #[error("the chunk starts at {start}, the upload has {size} bytes")]
    OutOfOrder {
        /// Where the chunk says it starts.
        start: u64,
        /// Bytes received so far.
        size: u64,
    },
    /// The disk failed.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
}

/// A blob's content, read as it streams out.
pub type BlobReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Where blob contents and their upload sessions live: one trait, so that an object
/// store can stand beside the filesystem. Every method may block; call them off the
/// async threads. An upload session belongs to one repository, and another
/// repository's request does not see it.
pub trait BlobStore: Send + Sync {
    /// Starts an upload session in a repository; returns its id.
    fn start(&self, namespace: &str, repository: &str) -> Result<String, BlobError>;
    /// The bytes an upload of this repository holds so far.
    fn upload_size(&self, namespace: &str, repository: &str, id: &str) -> Result<u64, BlobError>;
    /// Appends `chunk` to an upload; returns its new size.
    fn append(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
        chunk: &[u8],
    ) -> Result<u64, BlobError>;
    /// Ends an upload session and removes its bytes.
    fn cancel(&self, namespace: &str, repository: &str, id: &str) -> Result<(), BlobError>;
    /// Verifies an upload against `expected` and stores it as that blob; returns its
    /// size. On a mismatch the session stays open with its bytes, as the spec allows a
    /// retry.
    fn finish(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
        expected: &Digest,
    ) -> Result<u64, BlobError>;
    /// Reads a stored blob.
    fn read(&self, digest: &Digest) -> Result<BlobReader, BlobError>;
}

/// Blobs in a directory: `blobs/sha256/<hex>`, and uploads as `uploads/<id>` with the
/// repository they belong to in `uploads/<id>.repository`. Sessions live in files,
/// so they survive a restart, and several registry processes can share the directory.
pub struct FsBlobStore {
    root: PathBuf,
}

/// How long an upload may sit untouched before a start removes it.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl FsBlobStore {
    /// Blob storage under `root` (created if needed). Uploads untouched for a day are
    /// removed: their clients are gone.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        let uploads = root.join("uploads");
        std::fs::create_dir_all(&uploads)?;
        for entry in std::fs::read_dir(&uploads)?.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_UPLOAD);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(FsBlobStore {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn owner_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(format!("{id}.repository"))
    }

    /// The file of an upload of this repository.
    fn upload(&self, namespace: &str, repository: &str, id: &str) -> Result<PathBuf, BlobError> {
        let ours = !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && std::fs::read_to_string(self.owner_path(id))
                .is_ok_and(|owner| owner == format!("{namespace}/{repository}"));
        if ours {
            Ok(self.upload_path(id))
        } else {
            Err(BlobError::UnknownUpload(id.into()))
        }
    }

    fn end(&self, id: &str) -> Result<(), BlobError> {
        std::fs::remove_file(self.owner_path(id))?;
        Ok(())
    }
}

impl BlobStore for FsBlobStore {
    fn start(&self, namespace: &str, repository: &str) -> Result<String, BlobError> {
        let id = crate::accounts::random_hex(16)?;
        std::fs::File::create(self.upload_path(&id))?;
        std::fs::write(self.owner_path(&id), format!("{namespace}/{repository}"))?;
        Ok(id)
    }

    fn upload_size(&self, namespace: &str, repository: &str, id: &str) -> Result<u64, BlobError> {
        let path = self.upload(namespace, repository, id)?;
        Ok(std::fs::metadata(path)?.len())
    }

    fn append(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
        chunk: &[u8],
    ) -> Result<u64, BlobError> {
        use std::io::Write;
        let path = self.upload(namespace, repository, id)?;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(chunk)?;
        Ok(file.metadata()?.len())
    }

    fn cancel(&self, namespace: &str, repository: &str, id: &str) -> Result<(), BlobError> {
        let path = self.upload(namespace, repository, id)?;
        self.end(id)?;
        std::fs::remove_file(path)?;
        Ok(())
    }

    fn finish(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
        expected: &Digest,
    ) -> Result<u64, BlobError> {
        let path = self.upload(namespace, repository, id)?;
        let size = std::fs::metadata(&path)?.len();
        let actual = hash_file(&path)?;
        if actual != expected.to_string() {
            return Err(BlobError::DigestMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        std::fs::rename(&path, self.blob_path(expected))?;
        self.end(id)?;
        Ok(size)
    }

    fn read(&self, digest: &Digest) -> Result<BlobReader, BlobError> {
        let file = std::fs::File::open(self.blob_path(digest))?;
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }
}

/// The `sha256:` digest of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::digest::sha256_of_hash(&hasher.finalize()))
}
