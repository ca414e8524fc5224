#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| router_data_plane::fuzzing::request_fields(data));
