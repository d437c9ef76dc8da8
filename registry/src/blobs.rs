//! Blob contents on disk, content-addressed (`blobs/sha256/<hex>`), and the
//! upload sessions that fill them. A blob file exists only once its digest was
//! verified; uploads write to `uploads/<id>` and are moved into place.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// An upload session: the repository it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Upload {
    namespace: String,
    repository: String,
}

/// The blob directory and its open uploads.
pub struct BlobStore {
    root: PathBuf,
    uploads: Mutex<HashMap<String, Upload>>,
}

impl BlobStore {
    /// Blob storage under `root` (created if needed). Uploads left by an earlier process
    /// are removed: their sessions are gone with it.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        let uploads = root.join("uploads");
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads)?;
        }
        std::fs::create_dir_all(&uploads)?;
        Ok(BlobStore {
            root: root.to_path_buf(),
            uploads: Mutex::new(HashMap::new()),
        })
    }

    /// Where a verified blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Starts an upload session in a repository; returns its id.
    pub fn start(&self, namespace: &str, repository: &str) -> Result<String, BlobError> {
        let id = crate::accounts::random_hex(16)?;
        std::fs::File::create(self.upload_path(&id))?;
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                Upload {
                    namespace: namespace.into(),
                    repository: repository.into(),
                },
            );
        Ok(id)
    }

    /// The file of an upload of this repository, and its size so far.
    pub fn upload(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
    ) -> Result<(PathBuf, u64), BlobError> {
        let known = self
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|u| u.namespace == namespace && u.repository == repository);
        if !known {
            return Err(BlobError::UnknownUpload(id.into()));
        }
        let path = self.upload_path(id);
        let size = std::fs::metadata(&path)?.len();
        Ok((path, size))
    }

    /// Ends an upload session and removes its file.
    pub fn cancel(&self, namespace: &str, repository: &str, id: &str) -> Result<(), BlobError> {
        let (path, _) = self.upload(namespace, repository, id)?;
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        std::fs::remove_file(path)?;
        Ok(())
    }

    /// Verifies an upload against `expected` and moves it into place; returns its size.
    /// On a mismatch the session stays open with its bytes, as the spec allows a retry.
    pub fn finish(
        &self,
        namespace: &str,
        repository: &str,
        id: &str,
        expected: &Digest,
    ) -> Result<u64, BlobError> {
        let (path, size) = self.upload(namespace, repository, id)?;
        let actual = hash_file(&path)?;
        if actual != expected.to_string() {
            return Err(BlobError::DigestMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        std::fs::rename(&path, self.path(expected))?;
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(size)
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
