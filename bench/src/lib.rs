//! What the bench programs share: reading an HTTP response's length, and
//! finding the workspace they write into.

use std::path::{Path, PathBuf};

/// Length of the complete HTTP response at the start of `buf` (its head and
/// its `Content-Length` body): `Ok(None)` until all of it has come, `Err`
/// if the bytes are not an HTTP response.
pub fn http_response_len(buf: &[u8]) -> Result<Option<usize>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf)? else {
        return Ok(None);
    };
    let body = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    Ok((buf.len() >= head + body).then_some(head + body))
}

/// The workspace root above `bin_dir` (`target/release/`), where the
/// reports and READMEs live; the current directory if there is none.
pub fn workspace_root(bin_dir: &Path) -> PathBuf {
    bin_dir
        .ancestors()
        .find(|d| d.join("Cargo.toml").exists() && d.join("bench").is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_response_is_complete_only_with_its_body() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(http_response_len(&response[..20]), Ok(None));
        assert_eq!(http_response_len(&response[..response.len() - 1]), Ok(None));
        assert_eq!(http_response_len(response), Ok(Some(response.len())));
        let mut two = response.to_vec();
        two.extend_from_slice(response);
        assert_eq!(http_response_len(&two), Ok(Some(response.len())));
        assert!(http_response_len(b"not http\r\n\r\n").is_err());
    }
}
