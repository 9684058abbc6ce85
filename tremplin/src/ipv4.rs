//! `GetContainerInfoResponse.ipv4_address` encoding (§2.5): the network-order `s_addr` read as
//! a little-endian u32, i.e. `u32::from_le_bytes([a, b, c, d])` for `a.b.c.d`.

use std::net::Ipv4Addr;

/// Encodes an address for the wire.
pub fn encode(addr: Ipv4Addr) -> u32 {
    u32::from_le_bytes(addr.octets())
}

/// Decodes a wire value (inverse of [`encode`]).
pub fn decode(value: u32) -> Ipv4Addr {
    Ipv4Addr::from(value.to_le_bytes())
}

/// Parses dotted text and encodes it.
pub fn encode_str(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<Ipv4Addr>()
        .map(encode)
        .map_err(|e| format!("invalid IPv4 address {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector() {
        assert_eq!(encode_str("100.115.92.2"), Ok(0x025C_7364));
        assert_eq!(
            encode(Ipv4Addr::new(100, 115, 92, 2)).to_le_bytes(),
            [100, 115, 92, 2]
        );
    }

    #[test]
    fn round_trip_and_errors() {
        for a in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "100.115.92.193"] {
            let addr: Ipv4Addr = a.parse().expect("addr");
            assert_eq!(decode(encode(addr)), addr);
        }
        assert!(encode_str("fe80::1").is_err());
        assert!(encode_str("").is_err());
    }
}
