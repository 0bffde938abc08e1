//! An adapter that opens a TCP connection to the address in its body. A
//! Rust guest doing this imports `wasi:sockets`, which Weir does not grant:
//! the component must be refused at load, naming the import.

use std::io::Write;

use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Socket;

impl Adapter for Socket {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Socket)
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        let address = input.text()?.trim();
        let outcome = match std::net::TcpStream::connect(address) {
            Ok(mut stream) => format!("CONNECTED: {:?}", stream.write_all(b"exfiltrated")),
            Err(e) => format!("refused: {e}"),
        };
        out.event("evil", 1).field_str("outcome", &outcome);
        Ok(())
    }
}

weir_sdk::export_adapter!(Socket);
