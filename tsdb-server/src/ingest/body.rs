//! Write admission and bodies within limits: a write slot first, then at most
//! `max_body_bytes` as sent and `max_decoded_bytes` once gunzipped.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use tokio::sync::OwnedSemaphorePermit;

use super::WriteError;
use crate::metrics::ProtocolLabel;
use crate::state::AppState;

/// A write slot, waited for at most `write_queue_timeout`; refused at once while the
/// server shuts down.
pub(crate) async fn admit(
    state: &AppState,
    protocol: super::Protocol,
) -> Result<OwnedSemaphorePermit, WriteError> {
    let options = &state.inner.options;
    let refuse = |why: &str| {
        state
            .inner
            .metrics
            .writes_refused_overload
            .get_or_create(&ProtocolLabel {
                protocol: protocol.as_str(),
            })
            .inc();
        WriteError::Unavailable(why.to_owned(), options.retry_after)
    };
    if state.stopping() {
        return Err(refuse("the server is shutting down"));
    }
    match tokio::time::timeout(
        options.write_queue_timeout,
        state.inner.write_slots.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(refuse("the server is shutting down")),
        Err(_) => Err(refuse(
            "too many writes in progress; retry later (--write.max-concurrency)",
        )),
    }
}

/// The body as sent, at most `max_body_bytes`.
pub(crate) async fn read(state: &AppState, body: Body) -> Result<Bytes, WriteError> {
    let limit = state.inner.options.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            WriteError::TooLarge(format!(
                "the request body is larger than {limit} bytes (--http.max-body-bytes)"
            ))
        } else {
            WriteError::BadData(format!("reading the request body failed: {e}"))
        }
    })
}

/// Whether the body is gzip-compressed (`Content-Encoding: gzip`); other encodings but
/// `identity` are refused.
pub(crate) fn is_gzip(headers: &HeaderMap) -> Result<bool, WriteError> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(WriteError::UnsupportedEncoding(format!(
            "Content-Encoding {e:?} is not supported (gzip or none)"
        ))),
    }
}

/// Gunzips `body`, reading at most `limit` bytes of output.
pub(crate) fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| WriteError::BadData(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(WriteError::TooLarge(format!(
            "the body decompresses to more than {limit} bytes (--write.max-decoded-bytes)"
        )));
    }
    Ok(out)
}

/// The body's bytes, gunzipped when it says so. They are not checked as UTF-8 here: the
/// decoders check each line, so that one bad byte costs its line only.
pub(crate) fn decoded(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<u8>, WriteError> {
    if is_gzip(headers)? {
        gunzip(&body, state.inner.options.max_decoded_bytes)
    } else {
        Ok(Vec::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 100_000]).expect("write");
        let gz = enc.finish().expect("finish");
        assert_eq!(gunzip(&gz, 100_000).expect("fits").len(), 100_000);
        assert!(matches!(gunzip(&gz, 99_999), Err(WriteError::TooLarge(_))));
        assert!(matches!(
            gunzip(b"not gzip", 10),
            Err(WriteError::BadData(_))
        ));
    }
}
