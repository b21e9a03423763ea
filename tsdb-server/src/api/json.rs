//! JSON written byte for byte as Prometheus 2.42 writes it. The writer lives in
//! `tsdb-render`, where the command line finds it too (`gorilla-tsdb query -o json` prints
//! the same bytes as `/api/v1/query`).

pub(crate) use tsdb_render::json::{push_query_data, push_str, push_str_array};
