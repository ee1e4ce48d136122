//! oxkit's http(s) downloader, with one job: bring the content of one URL into a store on the
//! daemon's disk, once. Each (URL, request headers) has one entry — the content, its sha256
//! digest, the response's ETag and Last-Modified — that a later fetch revalidates with
//! `If-None-Match`; content expected to have a digest is checked before it is kept. Built on
//! `reqwest` with the system's OpenSSL.

mod cache;
mod error;
mod name;

pub use cache::{Content, Fetched, HttpCache, HttpOptions, Request, Resolved};
pub use error::HttpError;
pub use name::file_name;

#[cfg(test)]
mod tests;
