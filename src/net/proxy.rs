//! The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2) that a
//! layer-4 load balancer (HAProxy `send-proxy`/`send-proxy-v2`, nginx `proxy_protocol on`)
//! writes at the start of each TCP connection, before the TLS ClientHello.
//!
//! This module owns the header: recognising it, parsing it, and taking exactly its bytes off the
//! socket so that the ClientHello behind it stays there for rustls. It does not own the policy:
//! which peers must send a header (the `LOGGER_PROXY_PROTOCOL` list), what a [`Source::Local`] or
//! [`Source::Unknown`] peer may do (the allowlist), time limits, counting and logging all belong
//! to the listener that calls it.
//!
//! - [`parse`] is pure and incremental: given the bytes received so far it says "complete, this
//!   long, this source", "need at least N bytes", or what is wrong.
//! - [`read_header`] reads a header off any stream and never reads past it;
//!   [`read_header_tcp`] does the same on a `TcpStream` in one peek and one read when the header
//!   came in one piece.
//! - [`starts_with_proxy_signature`] peeks, for a peer that is *not* listed, whether it is trying
//!   to send a header anyway (a sensor must not choose its own address).
//! - [`fuzz_parse`] is the body of the project's cargo-fuzz target.
//!
//! None of the async functions has a timeout: the caller runs them under the handshake deadline (one
//! deadline for the header and the TLS handshake together, `tokio::time::timeout_at`). A peer that
//! sends half a header and stops is ended by that deadline, as the specification expects: "The
//! receiver may apply a short timeout and decide to abort the connection if the protocol header
//! is not seen within a few seconds".
//!
//! # Bounds
//! - v1: at most [`V1_MAX_LEN`] = 107 bytes including the CRLF. The specification: "If the CRLF
//!   sequence is not found in the first 107 characters, the receiver should declare the line
//!   invalid" (107 is `PROXY UNKNOWN` with two full IPv6 addresses and ports).
//! - v2: at most [`V2_MAX_LEN`] = 4096 bytes in all, the 16 fixed bytes included (so an address
//!   and TLV block of at most 4080 bytes). The specification sets no limit beyond the 16-bit
//!   length (65,535 + 16), and says the header is meant to be small: "Both formats are designed
//!   to fit in the smallest TCP segment that any TCP/IP host is required to support (576 - 40 =
//!   536 bytes)". 4 KiB leaves room for every TLV a balancer sends (SSL information, a 128-byte
//!   unique ID, a cloud balancer's endpoint ID) while a peer cannot make a connection hold 64 KiB.
//!   The length is checked as soon as the 16 fixed bytes are in, before anything else is read.
//!
//! # Decisions
//! - v1 is parsed strictly, as written: one space between fields, IPv4 as four decimal numbers
//!   without leading zeros ("Heading zeroes are not permitted in front of numbers in order to
//!   avoid any possible confusion with octal numbers"), ports 0-65535 in decimal without leading
//!   zeros, IPv6 as `inet_pton` reads it (which is what `inet_ntop` writes: `2001:db8::1`,
//!   `::ffff:192.0.2.1`; no zone). Both addresses and both ports are checked; only the source is
//!   returned. A lone CR or LF anywhere is an error: "The receiver must not tolerate a single CR
//!   or LF character to end the line".
//! - v1 `UNKNOWN` may be followed by anything up to the CRLF: "the receiver must ignore anything
//!   presented before the CRLF is found". It gives [`Source::Unknown`].
//! - v2 `LOCAL` gives [`Source::Local`] whatever its family byte and address block: "The
//!   receiver must accept this connection as valid and must use the real connection endpoints and
//!   discard the protocol block including the family which is ignored".
//! - v2 `PROXY` gives [`Source::Address`] for TCP over IPv4 (`\x11`) and IPv6 (`\x21`) only. The
//!   other defined combinations (UDP `\x12`/`\x22`, UNIX `\x31`/`\x32`, and any with an
//!   UNSPEC family or protocol) give [`Source::Unknown`]: "A receiver is not required to
//!   implement other ones, provided that it automatically falls back to the UNSPEC mode". A UDP
//!   source cannot be the source of this TCP connection, so its address is not used. Undefined
//!   family or protocol nibbles are errors ("must be rejected as invalid by receivers").
//! - v2 `PROXY`'s address block must be at least as long as its family needs (12 bytes for
//!   IPv4, 36 for IPv6, 216 for UNIX; nothing when the protocol is UNSPEC, whose addresses are
//!   ignored). Where that length is known, the bytes after it must be whole TLVs (type, 16-bit
//!   length, value), as HAProxy itself checks; their contents are skipped ("A receiver may choose
//!   to skip over and ignore the TLVs"), so a CRC32C TLV is not verified. `LOCAL` blocks and
//!   UNSPEC blocks are skipped unread.
//! - Partial headers are waited for (the specification's "Recommendation is to be tolerant"):
//!   HAProxy drops a header that is not whole in its first read, but a header split by a middle
//!   box or a slow link costs nothing more here than the caller's deadline.
//! - Addresses are returned as the header has them: a `TCP6` line with `::ffff:192.0.2.1` gives
//!   an IPv6 address; the caller maps it as it maps socket peers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// The start of every v1 header: `PROXY` and exactly one space.
pub(crate) const V1_PREFIX: [u8; 6] = *b"PROXY ";

/// The 12 bytes that start every v2 header.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header accepted, CRLF included (the specification's own maximum).
pub(crate) const V1_MAX_LEN: usize = 107;

/// The longest v2 header accepted, its 16 fixed bytes, addresses and TLVs included.
pub(crate) const V2_MAX_LEN: usize = 4096;

/// The shortest header of either version: `PROXY UNKNOWN\r\n`. Reading this many bytes first
/// never reads past a header (the shortest v2 header is 16 bytes).
const MIN_LEN: usize = 15;

/// v2's fixed part: signature, version and command, family and protocol, length.
const V2_FIXED_LEN: usize = 16;

/// Where a connection really comes from, according to its PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The client the balancer relayed: v1 `TCP4`/`TCP6`, or v2 `PROXY` with TCP over IPv4 or
    /// IPv6. The port is the client's source port.
    Address(SocketAddr),
    /// v2 `LOCAL`: the balancer's own connection (a health check); the TCP peer is the peer.
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` with a family or protocol that carries no usable TCP address
    /// (UNSPEC, UNIX, UDP). The balancer did not say who the client is; what that means (the
    /// specification: "use the real connection's parameters", or refuse) is the caller's choice.
    Unknown,
}

/// What [`parse`] made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// No decision yet. A header that turns out valid is at least `need_at_least` bytes long
    /// (always more than the bytes given, and at most [`V2_MAX_LEN`]), so reading up to that
    /// many bytes in all never takes a byte that follows the header.
    Incomplete {
        /// Total length (not the missing part) to have before asking again.
        need_at_least: usize,
    },
    /// A valid header: the first `header_len` bytes. Anything after them is the next protocol.
    Complete {
        /// Bytes to consume.
        header_len: usize,
        /// Who the header says the peer is.
        source: Source,
    },
}

/// A field of a v1 `TCP4`/`TCP6` line, to say which one is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V1Field {
    /// The layer-3 source address.
    SourceAddress,
    /// The layer-3 destination address.
    DestinationAddress,
    /// The TCP source port.
    SourcePort,
    /// The TCP destination port.
    DestinationPort,
}

impl std::fmt::Display for V1Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "the source address",
            V1Field::DestinationAddress => "the destination address",
            V1Field::SourcePort => "the source port",
            V1Field::DestinationPort => "the destination port",
        })
    }
}

/// Why bytes are not a valid PROXY header. Every one of them closes the connection.
///
/// A plain value (`Copy`, `Eq`) so that the same input always gives the same error and tests and
/// the fuzz target can compare them; I/O failures are in [`ReadError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature: not a PROXY header at all (for instance a TLS
    /// ClientHello from a balancer that was not set to send one).
    #[error("no PROXY header: the connection does not start with \"PROXY \" or the v2 signature")]
    BadSignature,
    /// v1: no CRLF within the first 107 bytes.
    #[error("PROXY v1 header: no CRLF within the first {max} bytes", max = V1_MAX_LEN)]
    V1TooLong,
    /// v1: a CR not followed by LF, or an LF without its CR.
    #[error("PROXY v1 header: a CR or LF that is not the closing CRLF")]
    V1LineEnding,
    /// v1: the protocol is not `TCP4 `, `TCP6 `, `UNKNOWN ` or `UNKNOWN` at the line end.
    #[error("PROXY v1 header: the protocol is not TCP4, TCP6 or UNKNOWN, followed by one space")]
    V1Protocol,
    /// v1: the line ends before this field.
    #[error("PROXY v1 header: {0} is missing")]
    V1Missing(V1Field),
    /// v1: this field is empty, so there were two spaces in a row or a space before the CRLF.
    #[error("PROXY v1 header: {0} is empty (two spaces in a row, or a space before the CRLF)")]
    V1Empty(V1Field),
    /// v1: more text after the destination port.
    #[error("PROXY v1 header: text after the destination port")]
    V1Trailing,
    /// v1: not an address in the form the specification allows.
    #[error("PROXY v1 header: {0} is not an address in canonical form")]
    V1Address(V1Field),
    /// v1: an IPv6 address on a `TCP4` line, or an IPv4 one on a `TCP6` line.
    #[error("PROXY v1 header: {0} is not of the family the protocol names")]
    V1FamilyMismatch(V1Field),
    /// v1: not 0-65535 in decimal without leading zeros.
    #[error("PROXY v1 header: {0} is not a port (0-65535 in decimal, no leading zeros)")]
    V1Port(V1Field),
    /// v2: the version nibble is not 2.
    #[error("PROXY v2 header: version {0} (only 2 is defined)")]
    V2Version(u8),
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("PROXY v2 header: command {0} (only LOCAL 0 and PROXY 1 are defined)")]
    V2Command(u8),
    /// v2 `PROXY`: the family (above 3) or protocol (above 2) nibble is not defined.
    #[error("PROXY v2 header: family and protocol byte {0:#04x} is not defined")]
    V2Family(u8),
    /// v2: 16 + the announced length is over [`V2_MAX_LEN`].
    #[error("PROXY v2 header: {0} bytes, over the limit of {max}", max = V2_MAX_LEN)]
    V2TooLong(usize),
    /// v2 `PROXY`: the address block is shorter than its family needs.
    #[error(
        "PROXY v2 header: a {len}-byte address block, shorter than the {need} bytes family \
         {family:#04x} needs"
    )]
    V2AddressTooShort {
        /// The family and protocol byte.
        family: u8,
        /// The announced length.
        len: usize,
        /// What that family needs.
        need: usize,
    },
    /// v2 `PROXY`: the bytes after the addresses are not whole TLVs; the offset is from the
    /// start of the header.
    #[error("PROXY v2 header: the TLV at byte {0} runs past the end of the header")]
    V2Tlv(usize),
}

/// Why [`read_header`] did not return a source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Header(#[from] ProxyError),
    /// The peer closed the connection before the header was whole.
    #[error("the connection closed after {received} bytes of a PROXY header")]
    Closed {
        /// Bytes of the header received before the end.
        received: usize,
    },
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Parses the start of a connection: `buf` holds every byte received so far.
///
/// The decision is made as early as the bytes allow (a TLS ClientHello is refused at its first
/// byte) and depends only on the bytes up to that point, so once a prefix gives an error or a
/// complete header, every longer prefix gives the same answer. Never panics.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete {
            need_at_least: MIN_LEN,
        }),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::BadSignature),
    }
}

/// The v1 protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V1Proto {
    Tcp4,
    Tcp6,
    Unknown,
}

impl V1Proto {
    /// The shortest valid line of this protocol: `PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n`,
    /// `PROXY TCP6 :: :: 0 0\r\n`, `PROXY UNKNOWN\r\n`. Lets the reader take bigger steps.
    fn min_len(self) -> usize {
        match self {
            V1Proto::Tcp4 => 32,
            V1Proto::Tcp6 => 22,
            V1Proto::Unknown => MIN_LEN,
        }
    }
}

/// What may follow `PROXY `. `UNKNOWN` ends at a space or at the CRLF; the CR is enough to
/// decide, since a CR that is not followed by LF is an error of its own.
const V1_PROTOCOLS: [(&[u8], V1Proto); 4] = [
    (b"TCP4 ", V1Proto::Tcp4),
    (b"TCP6 ", V1Proto::Tcp6),
    (b"UNKNOWN ", V1Proto::Unknown),
    (b"UNKNOWN\r", V1Proto::Unknown),
];

/// The protocol at the start of `after` (the bytes after `PROXY `), `None` while the bytes so
/// far could still become one. Checked on every call, complete line or not, so that `PROXY
/// GARBAGE` is refused at once and always with the same error.
fn v1_protocol(after: &[u8]) -> Result<Option<V1Proto>, ProxyError> {
    let mut possible = false;
    for (token, proto) in V1_PROTOCOLS {
        if after.starts_with(token) {
            return Ok(Some(proto));
        }
        possible |= token.starts_with(after);
    }
    if possible {
        Ok(None)
    } else {
        Err(ProxyError::V1Protocol)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::BadSignature);
    }
    let Some(after) = buf.get(V1_PREFIX.len()..) else {
        return Ok(Parsed::Incomplete {
            need_at_least: MIN_LEN,
        });
    };
    let proto = v1_protocol(after)?;

    // The first CR or LF ends the line (or is an error). The CR of a line of at most 107 bytes
    // is at index 105 at the latest, so a line with none in its first 106 bytes is too long.
    let window = &buf[..buf.len().min(V1_MAX_LEN - 1)];
    let found = window
        .iter()
        .skip(V1_PREFIX.len())
        .position(|&b| b == b'\r' || b == b'\n');
    let Some(cr) = found.map(|i| i + V1_PREFIX.len()) else {
        if buf.len() >= V1_MAX_LEN - 1 {
            return Err(ProxyError::V1TooLong);
        }
        // At least a CRLF is still to come.
        let shortest = proto.map_or(MIN_LEN, V1Proto::min_len);
        return Ok(Parsed::Incomplete {
            need_at_least: shortest.max(buf.len() + 2),
        });
    };
    if buf[cr] == b'\n' {
        return Err(ProxyError::V1LineEnding);
    }
    match buf.get(cr + 1) {
        None => {
            return Ok(Parsed::Incomplete {
                need_at_least: cr + 2,
            })
        }
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1LineEnding),
    }
    let header_len = cr + 2;

    // A CR inside the protocol token fails v1_protocol first, so a whole line always has a
    // protocol; the `None` arm only keeps this total.
    let source = match proto {
        Some(V1Proto::Unknown) => Source::Unknown,
        Some(p @ (V1Proto::Tcp4 | V1Proto::Tcp6)) => {
            // "TCP4 " and "TCP6 " are 5 bytes.
            let fields = buf
                .get(V1_PREFIX.len() + 5..cr)
                .ok_or(ProxyError::V1Missing(V1Field::SourceAddress))?;
            v1_addresses(fields, p == V1Proto::Tcp6)?
        }
        None => return Err(ProxyError::V1Protocol),
    };
    Ok(Parsed::Complete { header_len, source })
}

/// `<src> <dst> <sport> <dport>` of a `TCP4`/`TCP6` line (without the CRLF).
fn v1_addresses(fields: &[u8], v6: bool) -> Result<Source, ProxyError> {
    let mut parts = fields.split(|&b| b == b' ');
    let mut next = |field| match parts.next() {
        None => Err(ProxyError::V1Missing(field)),
        Some([]) => Err(ProxyError::V1Empty(field)),
        Some(text) => Ok(text),
    };
    let src = v1_ip(next(V1Field::SourceAddress)?, v6, V1Field::SourceAddress)?;
    v1_ip(
        next(V1Field::DestinationAddress)?,
        v6,
        V1Field::DestinationAddress,
    )?;
    let sport = v1_port(next(V1Field::SourcePort)?, V1Field::SourcePort)?;
    v1_port(next(V1Field::DestinationPort)?, V1Field::DestinationPort)?;
    if parts.next().is_some() {
        return Err(ProxyError::V1Trailing);
    }
    Ok(Source::Address(SocketAddr::new(src, sport)))
}

fn v1_ip(text: &[u8], v6: bool, field: V1Field) -> Result<IpAddr, ProxyError> {
    let as_v4 = strict_ipv4(text);
    // std's parser follows inet_pton: 1-4 hex digits a group, one `::`, a dotted-quad tail
    // (itself without leading zeros), no zone.
    let as_v6 = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<Ipv6Addr>().ok());
    match (v6, as_v4, as_v6) {
        (false, Some(ip), _) => Ok(IpAddr::V4(ip)),
        (true, _, Some(ip)) => Ok(IpAddr::V6(ip)),
        (false, None, Some(_)) | (true, Some(_), None) => Err(ProxyError::V1FamilyMismatch(field)),
        _ => Err(ProxyError::V1Address(field)),
    }
}

/// Four decimal numbers 0-255 separated by single dots, no leading zeros.
fn strict_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        *octet = u8::try_from(strict_decimal(parts.next()?)?).ok()?;
    }
    match parts.next() {
        None => Some(Ipv4Addr::from(octets)),
        Some(_) => None,
    }
}

fn v1_port(text: &[u8], field: V1Field) -> Result<u16, ProxyError> {
    strict_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(ProxyError::V1Port(field))
}

/// 1-5 ASCII digits, `0` alone or no leading zero. (Not `str::parse`, which takes `+1`.)
fn strict_decimal(text: &[u8]) -> Option<u32> {
    let digits_ok = !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit);
    if !digits_ok || (text.len() > 1 && text[0] == b'0') {
        return None;
    }
    Some(text.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// v2 commands.
const V2_LOCAL: u8 = 0x0;
const V2_PROXY: u8 = 0x1;

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::BadSignature);
    }
    // Each fixed byte is judged as soon as it is in, so a bad one is refused without waiting.
    let fixed = Ok(Parsed::Incomplete {
        need_at_least: V2_FIXED_LEN,
    });
    let Some(&version_command) = buf.get(12) else {
        return fixed;
    };
    let (version, command) = (version_command >> 4, version_command & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    if command != V2_LOCAL && command != V2_PROXY {
        return Err(ProxyError::V2Command(command));
    }
    let proxy = command == V2_PROXY;
    let Some(&family) = buf.get(13) else {
        return fixed;
    };
    // LOCAL ignores the family, so only PROXY's is checked.
    if proxy && (family >> 4 > 0x3 || family & 0x0f > 0x2) {
        return Err(ProxyError::V2Family(family));
    }
    let Some(&[hi, lo]) = buf.get(14..16) else {
        return fixed;
    };
    let block_len = usize::from(u16::from_be_bytes([hi, lo]));
    let header_len = V2_FIXED_LEN + block_len;
    if header_len > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(header_len));
    }
    let need = if proxy { v2_address_len(family) } else { 0 };
    if block_len < need {
        return Err(ProxyError::V2AddressTooShort {
            family,
            len: block_len,
            need,
        });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..header_len) else {
        return Ok(Parsed::Incomplete {
            need_at_least: header_len,
        });
    };
    if !proxy {
        return Ok(Parsed::Complete {
            header_len,
            source: Source::Local,
        });
    }
    if need > 0 {
        check_tlvs(block.get(need..).unwrap_or_default(), V2_FIXED_LEN + need)?;
    }
    let source = v2_tcp_source(family, block).map_or(Source::Unknown, Source::Address);
    Ok(Parsed::Complete { header_len, source })
}

/// The client's address in a v2 `PROXY` block of TCP over IPv4 or IPv6: source address,
/// destination address, source port, destination port, in network byte order.
fn v2_tcp_source(family: u8, block: &[u8]) -> Option<SocketAddr> {
    let (ip, port_at) = match family {
        0x11 => (IpAddr::from(*block.first_chunk::<4>()?), 8),
        0x21 => (IpAddr::from(*block.first_chunk::<16>()?), 32),
        _ => return None,
    };
    let port = block.get(port_at..)?.first_chunk::<2>()?;
    Some(SocketAddr::new(ip, u16::from_be_bytes(*port)))
}

/// The address block a v2 family and protocol byte needs; 0 when the protocol is UNSPEC, whose
/// addresses "the receiver should ignore".
fn v2_address_len(family: u8) -> usize {
    match family {
        0x11 | 0x12 => 12,  // 2 × 4 + 2 × 2
        0x21 | 0x22 => 36,  // 2 × 16 + 2 × 2
        0x31 | 0x32 => 216, // 2 × 108
        _ => 0,
    }
}

/// The bytes after the addresses must be whole TLVs: a type byte, a 16-bit big-endian length,
/// that many bytes of value. `offset` is where `tlvs` starts in the header, for the error.
fn check_tlvs(mut tlvs: &[u8], mut offset: usize) -> Result<(), ProxyError> {
    while let Some(&[_, hi, lo]) = tlvs.get(..3) {
        let len = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(len..).ok_or(ProxyError::V2Tlv(offset))?;
        offset += len;
    }
    if tlvs.is_empty() {
        Ok(())
    } else {
        Err(ProxyError::V2Tlv(offset))
    }
}

/// Reads a PROXY header (v1 or v2) from the start of `stream` and returns its source, having
/// consumed exactly the header's bytes: the next byte read from `stream` is the first byte after
/// it (the TLS ClientHello).
///
/// It never asks for more bytes than [`Parsed::Incomplete`] says a valid header still needs, so
/// it cannot read past one, and every read is bounded ([`V1_MAX_LEN`], [`V2_MAX_LEN`]). A v1 line
/// takes a few small reads (15 bytes, then up to its protocol's shortest form, then 2 bytes at a
/// time: 8 reads for a typical IPv4 line, 20-45 for IPv6); a v2 header takes three (15 bytes,
/// the 16th, then the rest). No timeout: run it under the handshake deadline, which ends a
/// peer that stops half-way. Not cancel-safe (bytes read are lost), which does not matter: a
/// connection whose header was not read is closed.
pub(crate) async fn read_header<R>(stream: &mut R) -> Result<Source, ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    // One small allocation per balancer connection; a 4 KiB array would sit in every
    // connection's future for the connection's whole life.
    let mut buf = Vec::new();
    loop {
        let need = match parse(&buf)? {
            Parsed::Complete { header_len, source } => {
                debug_assert_eq!(header_len, buf.len(), "read past the PROXY header");
                return Ok(source);
            }
            Parsed::Incomplete { need_at_least } => need_at_least,
        };
        let have = buf.len();
        buf.resize(need, 0);
        let n = stream.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(ReadError::Closed { received: have });
        }
        buf.truncate(have + n);
    }
}

/// [`read_header`] for a TCP stream, in two system calls when the header arrives in one piece
/// (as the specification asks senders to make sure it does): one peek, then a read of exactly
/// the header. A header not whole in the first peek is read by [`read_header`]'s steps, so the
/// result is the same; only the number of reads differs (a v1 IPv6 line otherwise takes 20-45).
/// The same deadline applies.
pub(crate) async fn read_header_tcp(stream: &mut TcpStream) -> Result<Source, ReadError> {
    // Enough for any v1 line and for v2 with a few TLVs; a longer header takes the slow path.
    let mut buf = [0u8; 256];
    let n = stream.peek(&mut buf).await?;
    if let Parsed::Complete { header_len, source } = parse(&buf[..n])? {
        // Those bytes are queued already: this read returns at once and takes only them.
        stream.read_exact(&mut buf[..header_len]).await?;
        return Ok(source);
    }
    read_header(stream).await
}

/// Whether `stream` starts with a PROXY signature (`PROXY ` or v2's 12 bytes), without
/// consuming anything. For a peer that is not a listed balancer: `true` means it is trying to
/// name its own address, and the caller closes the connection.
///
/// Decides from the fewest bytes possible, so it does not delay a TLS client: its first byte,
/// 0x16, answers `false` at once, as does any byte other than `P` or CR, and any byte where the
/// data stops matching (`POST` at its second byte). Only a peer whose data so far is a proper
/// prefix of a signature is waited for, and without spinning: the wait wakes only when new data
/// arrives. A peer that closes first gives `false` (its TLS handshake fails anyway). No timeout:
/// run it under the handshake deadline. If the future is dropped while waiting, the stream's
/// readiness may have been reset, so close the connection then (as a deadline does).
pub(crate) async fn starts_with_proxy_signature(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; V2_SIGNATURE.len()];
    // Waits for the first data, then returns what is there: nearly always enough.
    let n = stream.peek(&mut buf).await?;
    match signature_verdict(&buf[..n]) {
        Some(verdict) => Ok(verdict),
        None => wait_for_verdict(stream).await,
    }
}

/// `Some(true)` for a whole signature, `Some(false)` for bytes that are not the start of one
/// (or none: the peer closed), `None` for a proper prefix of one.
fn signature_verdict(peeked: &[u8]) -> Option<bool> {
    let signature: &[u8] = match peeked.first() {
        Some(b'P') => &V1_PREFIX,
        Some(b'\r') => &V2_SIGNATURE,
        _ => return Some(false),
    };
    let n = peeked.len().min(signature.len());
    if peeked[..n] != signature[..n] {
        Some(false)
    } else if n == signature.len() {
        Some(true)
    } else {
        None
    }
}

/// The rare case: the first data was part of a signature. tokio's `peek` returns at once while
/// any data is queued, so calling it again would spin. Instead, peek through a second handle on
/// the same socket (a `dup`: the same open file, so non-blocking too) inside `try_io`: answering
/// `WouldBlock` there makes tokio clear the socket's readiness, so `ready` sleeps until the
/// kernel reports new data; tokio only clears readiness it has not seen change since it was
/// checked, so data that arrives between the peek and the clearing still wakes it. The end of
/// the stream is not seen by a peek while data is queued, and tokio's "read closed" readiness is
/// never cleared: once the peer has closed, the bytes peeked are all there will be.
#[cfg(unix)]
async fn wait_for_verdict(stream: &TcpStream) -> io::Result<bool> {
    use std::os::fd::AsFd;
    use tokio::io::Interest;

    let peeker = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    let mut buf = [0u8; V2_SIGNATURE.len()];
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peeker.peek(&mut buf)?;
            signature_verdict(&buf[..n]).ok_or_else(|| io::ErrorKind::WouldBlock.into())
        });
        match peeked {
            Ok(verdict) => return Ok(verdict),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            // Closed before that peek: a proper prefix of a signature, and no more to come.
            Err(_) if ready.is_read_closed() => return Ok(false),
            Err(_) => {}
        }
    }
}

/// Elsewhere there is no way to wait for more data without reading it: a proper prefix of a
/// signature is not a TLS ClientHello either, so it is refused as a header would be.
#[cfg(not(unix))]
async fn wait_for_verdict(_stream: &TcpStream) -> io::Result<bool> {
    Ok(true)
}

/// The body of the project's cargo-fuzz target (`fuzz/fuzz_targets/proxy_header.rs` calls it with the
/// fuzzer's bytes). Panics when an invariant breaks, which is what the fuzzer looks for:
///
/// - [`parse`] never panics, on `data` or any prefix of it;
/// - `Incomplete { need_at_least }` is more than the bytes given and at most [`V2_MAX_LEN`];
/// - `Complete { header_len }` is within the bytes given and at least 15;
/// - once a prefix is decided (complete or an error), every longer prefix gives the same answer;
/// - every prefix of a complete header is `Incomplete` with `need_at_least <= header_len`, so
///   [`read_header`] cannot read past a header.
pub fn fuzz_parse(data: &[u8]) {
    let whole = parse(data);
    let header_len = match whole {
        Ok(Parsed::Complete { header_len, .. }) => Some(header_len),
        _ => None,
    };
    // Every decision is made within V2_MAX_LEN bytes; longer prefixes only repeat it.
    let last = data.len().min(V2_MAX_LEN + 1);
    let mut decided = None;
    for k in 0..=last {
        let prefix = &data[..k];
        let result = parse(prefix);
        match result {
            Ok(Parsed::Incomplete { need_at_least }) => {
                assert!(need_at_least > k, "Incomplete asks for no more bytes at {k}");
                assert!(need_at_least <= V2_MAX_LEN, "Incomplete asks for {need_at_least}");
                if let Some(header_len) = header_len {
                    assert!(
                        need_at_least <= header_len,
                        "need_at_least {need_at_least} reads past a {header_len}-byte header"
                    );
                }
            }
            Ok(Parsed::Complete { header_len, .. }) => {
                assert!(
                    (MIN_LEN..=k).contains(&header_len),
                    "header_len {header_len} at {k}"
                );
            }
            Err(_) => {}
        }
        match decided {
            None if !matches!(result, Ok(Parsed::Incomplete { .. })) => decided = Some(result),
            Some(earlier) => assert_eq!(earlier, result, "the decision changed at {k}"),
            None => {}
        }
    }
    if let Some(decision) = decided {
        assert_eq!(decision, whole, "the whole input decided differently");
    }
    if let Some(header_len) = header_len {
        assert_eq!(
            parse(&data[..header_len]),
            whole,
            "the header alone parses differently"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{SocketAddrV4, SocketAddrV6};
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// What a TLS client sends first: a handshake record header and the start of a ClientHello.
    const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03";

    fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        let (sip, dip, sp, dp) = (src.ip(), dst.ip(), src.port(), dst.port());
        format!("PROXY {proto} {sip} {dip} {sp} {dp}\r\n").into_bytes()
    }

    fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[version_command, family]);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v2_proxy(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        let family = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                block.extend_from_slice(&s.octets());
                block.extend_from_slice(&d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                block.extend_from_slice(&s.octets());
                block.extend_from_slice(&d.octets());
                0x21
            }
            _ => panic!("mixed families"),
        };
        block.extend_from_slice(&src.port().to_be_bytes());
        block.extend_from_slice(&dst.port().to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(0x21, family, &block)
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(header: &[u8]) -> Source {
        match parse(header) {
            Ok(Parsed::Complete { header_len, source }) => {
                assert_eq!(header_len, header.len(), "{:?}", String::from_utf8_lossy(header));
                source
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(header)),
        }
    }

    fn error(header: &[u8]) -> ProxyError {
        match parse(header) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(header)),
        }
    }

    /// Every proper prefix is Incomplete and never asks past the header; the header followed by a
    /// ClientHello parses the same; the fuzz invariants hold.
    fn check_valid(header: &[u8]) -> Source {
        let source = complete(header);
        for k in 0..header.len() {
            match parse(&header[..k]) {
                Ok(Parsed::Incomplete { need_at_least }) => {
                    assert!(
                        need_at_least > k && need_at_least <= header.len(),
                        "{k}: {need_at_least}"
                    )
                }
                other => panic!("prefix {k} of {:?}: {other:?}", String::from_utf8_lossy(header)),
            }
        }
        let mut followed = header.to_vec();
        followed.extend_from_slice(CLIENT_HELLO);
        assert_eq!(
            parse(&followed),
            Ok(Parsed::Complete {
                header_len: header.len(),
                source
            })
        );
        fuzz_parse(&followed);
        source
    }

    // ---- v1 ----

    #[test]
    fn v1_tcp4() {
        let h = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        assert_eq!(check_valid(h), Source::Address(addr("192.168.0.1:56324")));
    }

    #[test]
    fn v1_tcp4_longest_and_shortest() {
        let h = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(h.len(), 56);
        assert_eq!(check_valid(h), Source::Address(addr("255.255.255.255:65535")));
        let h = b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n";
        assert_eq!(h.len(), V1Proto::Tcp4.min_len());
        assert_eq!(check_valid(h), Source::Address(addr("0.0.0.0:0")));
    }

    #[test]
    fn v1_tcp6() {
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n";
        assert_eq!(check_valid(h), Source::Address(addr("[2001:db8::1]:40000")));
        let h = b"PROXY TCP6 :: :: 0 0\r\n";
        assert_eq!(h.len(), V1Proto::Tcp6.min_len());
        assert_eq!(check_valid(h), Source::Address(addr("[::]:0")));
        // Upper case, full groups, a v4-mapped address as inet_ntop writes it.
        let h = b"PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:00FF ::ffff:192.0.2.1 1 2\r\n";
        assert_eq!(check_valid(h), Source::Address(addr("[2001:db8::ff]:1")));
        let h = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n";
        assert_eq!(check_valid(h), Source::Address(addr("[::ffff:192.0.2.1]:1")));
    }

    #[test]
    fn v1_tcp6_longest_is_104_bytes() {
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let h = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
        assert_eq!(h.len(), 104);
        check_valid(h.as_bytes());
    }

    #[test]
    fn v1_unknown() {
        assert_eq!(check_valid(b"PROXY UNKNOWN\r\n"), Source::Unknown);
        assert_eq!(check_valid(b"PROXY UNKNOWN \r\n"), Source::Unknown);
        // "the receiver must ignore anything presented before the CRLF is found"
        assert_eq!(
            check_valid(b"PROXY UNKNOWN whatever \x00\xff 1 2\r\n"),
            Source::Unknown
        );
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(check_valid(worst.as_bytes()), Source::Unknown);
    }

    #[test]
    fn v1_longer_than_107_bytes() {
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let h = format!("PROXY UNKNOWN {f} {f} 65535 655350\r\n");
        assert_eq!(h.len(), V1_MAX_LEN + 1);
        assert_eq!(error(h.as_bytes()), ProxyError::V1TooLong);
        // Decided once 106 bytes hold no CR: the CR could only come too late.
        assert_eq!(error(&h.as_bytes()[..106]), ProxyError::V1TooLong);
        assert!(matches!(
            parse(&h.as_bytes()[..105]),
            Ok(Parsed::Incomplete { .. })
        ));
        assert_eq!(error(&[b'P'; 200][..]), ProxyError::BadSignature);
        let mut endless = b"PROXY UNKNOWN ".to_vec();
        endless.resize(500, b'a');
        assert_eq!(error(&endless), ProxyError::V1TooLong);
        fuzz_parse(&endless);
    }

    #[test]
    fn v1_spacing() {
        use V1Field::*;
        let cases: [(&[u8], ProxyError); 7] = [
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Protocol),
            (
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::V1Empty(SourceAddress),
            ),
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                ProxyError::V1Empty(DestinationAddress),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
                ProxyError::V1Empty(SourcePort),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
                ProxyError::V1Empty(DestinationPort),
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", ProxyError::V1Trailing),
            (
                b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
                ProxyError::V1Address(SourceAddress),
            ),
        ];
        for (h, e) in cases {
            assert_eq!(error(h), e, "{:?}", String::from_utf8_lossy(h));
            fuzz_parse(h);
        }
        assert_eq!(
            error(b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            ProxyError::BadSignature
        );
    }

    #[test]
    fn v1_missing_and_extra_fields() {
        use V1Field::*;
        assert_eq!(error(b"PROXY TCP4 \r\n"), ProxyError::V1Empty(SourceAddress));
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4\r\n"),
            ProxyError::V1Missing(DestinationAddress)
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n"),
            ProxyError::V1Missing(SourcePort)
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
            ProxyError::V1Missing(DestinationPort)
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            ProxyError::V1Trailing
        );
    }

    #[test]
    fn v1_bad_protocol() {
        for h in [
            &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY UNKNOWN\n",
            b"PROXY TCP4\r\n",
            b"PROXY \r\n",
        ] {
            assert_eq!(
                error(h),
                ProxyError::V1Protocol,
                "{:?}",
                String::from_utf8_lossy(h)
            );
            fuzz_parse(h);
        }
        // Refused as soon as the protocol cannot match, without waiting for the line end.
        assert_eq!(error(b"PROXY X"), ProxyError::V1Protocol);
        assert_eq!(error(b"PROXY TCP5"), ProxyError::V1Protocol);
    }

    #[test]
    fn v1_bad_ports() {
        use V1Field::*;
        for port in [
            "65536", "99999", "100000", "01", "00", "+1", "-1", "1a", "0x1", " 1",
        ] {
            let h = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 443\r\n");
            let e = error(h.as_bytes());
            assert!(
                e == ProxyError::V1Port(SourcePort) || e == ProxyError::V1Empty(SourcePort),
                "{port:?}: {e:?}"
            );
            let h = format!("PROXY TCP4 1.2.3.4 5.6.7.8 443 {port}\r\n");
            let e = error(h.as_bytes());
            assert!(
                e == ProxyError::V1Port(DestinationPort) || e == ProxyError::V1Empty(DestinationPort),
                "{port:?}: {e:?}"
            );
        }
        let h = b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n";
        assert_eq!(complete(h), Source::Address(addr("1.2.3.4:0")));
    }

    #[test]
    fn v1_bad_addresses() {
        use V1Field::*;
        for ip in [
            "01.2.3.4",
            "1.2.3.04",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            "a.b.c.d",
            "0000.1.1.1",
            "1.2.3.4/32",
            "localhost",
        ] {
            let h = format!("PROXY TCP4 {ip} 5.6.7.8 1 2\r\n");
            assert_eq!(error(h.as_bytes()), ProxyError::V1Address(SourceAddress), "{ip}");
            let h = format!("PROXY TCP4 5.6.7.8 {ip} 1 2\r\n");
            assert_eq!(
                error(h.as_bytes()),
                ProxyError::V1Address(DestinationAddress),
                "{ip}"
            );
        }
        for ip in [
            "2001:db8:::1",
            "2001:db8::1::2",
            "12345::1",
            "fe80::1%eth0",
            "[::1]",
            "g::1",
        ] {
            let h = format!("PROXY TCP6 {ip} ::1 1 2\r\n");
            assert_eq!(error(h.as_bytes()), ProxyError::V1Address(SourceAddress), "{ip}");
        }
    }

    #[test]
    fn v1_family_mismatch() {
        use V1Field::*;
        let h = b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n";
        assert_eq!(error(h), ProxyError::V1FamilyMismatch(SourceAddress));
        let h = b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n";
        assert_eq!(error(h), ProxyError::V1FamilyMismatch(DestinationAddress));
        let h = b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n";
        assert_eq!(error(h), ProxyError::V1FamilyMismatch(SourceAddress));
        let h = b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n";
        assert_eq!(error(h), ProxyError::V1FamilyMismatch(DestinationAddress));
    }

    #[test]
    fn v1_line_endings() {
        for h in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n",
            b"PROXY UNKNOWN \n\r\n",
            b"PROXY UNKNOWN\r\r\n",
        ] {
            assert_eq!(
                error(h),
                ProxyError::V1LineEnding,
                "{:?}",
                String::from_utf8_lossy(h)
            );
            fuzz_parse(h);
        }
    }

    #[test]
    fn v1_truncated_at_every_length() {
        let headers: [&[u8]; 4] = [
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n",
            b"PROXY UNKNOWN\r\n",
            b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
        ];
        for h in headers {
            check_valid(h);
        }
    }

    // ---- v2 ----

    #[test]
    fn v2_proxy_inet() {
        let h = v2_proxy(addr("192.0.2.7:51234"), addr("198.51.100.1:443"), &[]);
        assert_eq!(h.len(), 28);
        assert_eq!(check_valid(&h), Source::Address(addr("192.0.2.7:51234")));
    }

    #[test]
    fn v2_proxy_inet6() {
        let h = v2_proxy(addr("[2001:db8::7]:51234"), addr("[2001:db8::1]:443"), &[]);
        assert_eq!(h.len(), 52);
        assert_eq!(check_valid(&h), Source::Address(addr("[2001:db8::7]:51234")));
    }

    #[test]
    fn v2_proxy_with_tlvs() {
        let mut tlvs = tlv(0x01, b"h2"); // ALPN
        tlvs.extend(tlv(0x02, b"logger.example.com")); // AUTHORITY
        tlvs.extend(tlv(0x04, b"")); // NOOP, empty
        tlvs.extend(tlv(0x05, &[7; 128])); // UNIQUE_ID
        tlvs.extend(tlv(0x20, &[1, 0, 0, 0, 0])); // SSL, no sub-TLVs
        tlvs.extend(tlv(0xEA, &[0x01; 23])); // a cloud balancer's own
        let h = v2_proxy(addr("192.0.2.7:1"), addr("198.51.100.1:443"), &tlvs);
        assert_eq!(check_valid(&h), Source::Address(addr("192.0.2.7:1")));
        let h = v2_proxy(addr("[2001:db8::7]:2"), addr("[::1]:443"), &tlvs);
        assert_eq!(check_valid(&h), Source::Address(addr("[2001:db8::7]:2")));
    }

    #[test]
    fn v2_tlv_framing() {
        let src = addr("192.0.2.7:1");
        let dst = addr("198.51.100.1:443");
        // A TLV header cut short, a value running past the end, a stray byte after a TLV.
        let h = v2_proxy(src, dst, &[0x04, 0x00]);
        assert_eq!(error(&h), ProxyError::V2Tlv(28));
        let h = v2_proxy(src, dst, &[0x04, 0x00, 0x05, 1, 2]);
        assert_eq!(error(&h), ProxyError::V2Tlv(28));
        let mut tlvs = tlv(0x01, b"h2");
        tlvs.push(0);
        let h = v2_proxy(src, dst, &tlvs);
        assert_eq!(error(&h), ProxyError::V2Tlv(33));
        // Not checked where the address length is not known: LOCAL, or an UNSPEC protocol.
        assert_eq!(check_valid(&v2(0x20, 0x11, &[0xff; 13])), Source::Local);
        assert_eq!(check_valid(&v2(0x21, 0x00, &[0xff; 5])), Source::Unknown);
    }

    #[test]
    fn v2_local() {
        // HAProxy's health check: LOCAL, UNSPEC, no addresses.
        let h = v2(0x20, 0x00, &[]);
        assert_eq!(h.len(), 16);
        assert_eq!(check_valid(&h), Source::Local);
        // "must not assume zero is presented for LOCAL connections": the block is skipped.
        let h = v2(0x20, 0x11, &[1; 12]);
        assert_eq!(check_valid(&h), Source::Local);
        // "discard the protocol block including the family which is ignored"
        let h = v2(0x20, 0xff, &[1; 3]);
        assert_eq!(check_valid(&h), Source::Local);
    }

    #[test]
    fn v2_proxy_without_a_tcp_address() {
        // UNSPEC, UDP, UNIX: fall back to "the UNSPEC mode".
        assert_eq!(check_valid(&v2(0x21, 0x00, &[])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x12, &[1; 12])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x22, &[1; 36])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x31, &[0; 216])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x32, &[0; 216])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x10, &[])), Source::Unknown);
        assert_eq!(check_valid(&v2(0x21, 0x01, &[])), Source::Unknown);
    }

    #[test]
    fn v2_bad_version_and_command() {
        for version in [0x00, 0x10, 0x30, 0xf0] {
            let h = v2(version | 0x01, 0x11, &[0; 12]);
            assert_eq!(error(&h), ProxyError::V2Version(version >> 4));
            // Refused at the 13th byte.
            assert_eq!(error(&h[..13]), ProxyError::V2Version(version >> 4));
            fuzz_parse(&h);
        }
        for command in [0x2, 0x3, 0xf] {
            let h = v2(0x20 | command, 0x11, &[0; 12]);
            assert_eq!(error(&h), ProxyError::V2Command(command));
            fuzz_parse(&h);
        }
    }

    #[test]
    fn v2_bad_family() {
        for family in [0x13, 0x41, 0xf1, 0x03, 0x33] {
            let h = v2(0x21, family, &[0; 216]);
            assert_eq!(error(&h), ProxyError::V2Family(family));
            assert_eq!(error(&h[..14]), ProxyError::V2Family(family));
            fuzz_parse(&h);
        }
    }

    #[test]
    fn v2_address_block_too_short() {
        for (family, need) in [
            (0x11, 12),
            (0x12, 12),
            (0x21, 36),
            (0x22, 36),
            (0x31, 216),
            (0x32, 216),
        ] {
            for len in [0, need - 1] {
                let h = v2(0x21, family, &vec![0; len]);
                let e = ProxyError::V2AddressTooShort { family, len, need };
                assert_eq!(error(&h), e);
                // Decided from the 16 fixed bytes, before the block is read.
                assert_eq!(error(&h[..16]), e);
            }
        }
    }

    #[test]
    fn v2_size_limit() {
        // 16 + 4080 = 4096 is accepted; one more byte is not, refused from the fixed part.
        let block = vec![0; V2_MAX_LEN - 16];
        assert_eq!(check_valid(&v2(0x20, 0x00, &block)), Source::Local);
        let mut tlvs = tlv(0x04, &vec![0; V2_MAX_LEN - 16 - 12 - 3]);
        let h = v2_proxy(addr("192.0.2.7:1"), addr("198.51.100.1:443"), &tlvs);
        assert_eq!(h.len(), V2_MAX_LEN);
        assert_eq!(check_valid(&h), Source::Address(addr("192.0.2.7:1")));
        tlvs.push(0);
        let h = v2_proxy(addr("192.0.2.7:1"), addr("198.51.100.1:443"), &tlvs);
        assert_eq!(error(&h), ProxyError::V2TooLong(V2_MAX_LEN + 1));
        assert_eq!(error(&h[..16]), ProxyError::V2TooLong(V2_MAX_LEN + 1));
        let mut h = v2(0x21, 0x11, &[]);
        h[14..16].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(error(&h), ProxyError::V2TooLong(16 + 65535));
    }

    #[test]
    fn v2_truncated_at_every_length() {
        let h = v2_proxy(addr("[2001:db8::7]:2"), addr("[::1]:443"), &tlv(0x01, b"h2"));
        check_valid(&h);
        // The fixed part is read whole first, then the rest in one step.
        assert_eq!(parse(&h[..1]), Ok(Parsed::Incomplete { need_at_least: 16 }));
        assert_eq!(
            parse(&h[..16]),
            Ok(Parsed::Incomplete {
                need_at_least: h.len()
            })
        );
    }

    // ---- signatures ----

    #[test]
    fn wrong_signatures() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { need_at_least: 15 }));
        // A TLS ClientHello is refused at its first byte.
        assert_eq!(error(&CLIENT_HELLO[..1]), ProxyError::BadSignature);
        for h in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /log",
            b"PROPFIND",
            b"proxy tcp4",
            b"\r\n\r\n\r\n",
            b"\n",
        ] {
            assert_eq!(
                error(h),
                ProxyError::BadSignature,
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
        // Any one wrong byte of the v2 signature.
        let good = v2(0x20, 0x00, &[]);
        for i in 0..12 {
            let mut h = good.clone();
            h[i] ^= 0x40;
            assert_eq!(error(&h), ProxyError::BadSignature, "byte {i}");
            assert_eq!(error(&h[..=i]), ProxyError::BadSignature, "byte {i}");
        }
        assert_eq!(error(b"PROXZ"), ProxyError::BadSignature);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            ProxyError::V1Port(V1Field::SourcePort).to_string(),
            "PROXY v1 header: the source port is not a port (0-65535 in decimal, no leading zeros)"
        );
        assert_eq!(
            ProxyError::V1TooLong.to_string(),
            "PROXY v1 header: no CRLF within the first 107 bytes"
        );
        assert_eq!(
            ProxyError::V2TooLong(5000).to_string(),
            "PROXY v2 header: 5000 bytes, over the limit of 4096"
        );
        assert_eq!(
            ProxyError::V2AddressTooShort {
                family: 0x21,
                len: 12,
                need: 36
            }
            .to_string(),
            "PROXY v2 header: a 12-byte address block, shorter than the 36 bytes family 0x21 needs"
        );
        assert_eq!(
            ReadError::from(ProxyError::BadSignature).to_string(),
            ProxyError::BadSignature.to_string()
        );
    }

    // ---- property tests ----

    fn address_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (any::<SocketAddrV4>(), any::<SocketAddrV4>())
                .prop_map(|(s, d)| (SocketAddr::V4(s), SocketAddr::V4(d))),
            (any::<(Ipv6Addr, u16)>(), any::<(Ipv6Addr, u16)>()).prop_map(|(s, d)| (
                SocketAddr::V6(SocketAddrV6::new(s.0, s.1, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(d.0, d.1, 0, 0))
            )),
        ]
    }

    proptest! {
        #[test]
        fn any_address_pair_round_trips((src, dst) in address_pair(), after in any::<Vec<u8>>()) {
            for header in [v1(src, dst), v2_proxy(src, dst, &[])] {
                prop_assert_eq!(check_valid(&header), Source::Address(src));
                let mut followed = header.clone();
                followed.extend_from_slice(&after);
                prop_assert_eq!(
                    parse(&followed),
                    Ok(Parsed::Complete { header_len: header.len(), source: Source::Address(src) })
                );
            }
        }

        #[test]
        fn fuzz_invariants_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_parse(&data);
        }

        #[test]
        fn fuzz_invariants_on_v1_like_lines(
            tail in proptest::collection::vec(
                prop::sample::select(b"TCP46UNKOW 0123456789abcdef:.\r\n".to_vec()),
                0..120,
            ),
        ) {
            let mut line = V1_PREFIX.to_vec();
            line.extend_from_slice(&tail);
            fuzz_parse(&line);
        }

        #[test]
        fn fuzz_invariants_on_damaged_headers(
            (src, dst) in address_pair(),
            v2_header in any::<bool>(),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut h = if v2_header { v2_proxy(src, dst, &tlv(0x01, b"h2")) } else { v1(src, dst) };
            for (at, byte) in damage {
                let i = at.index(h.len());
                h[i] = byte;
            }
            h.extend_from_slice(CLIENT_HELLO);
            fuzz_parse(&h[..cut.index(h.len() + 1)]);
            fuzz_parse(&h);
        }
    }

    // ---- reading from a real connection ----

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        (client, server)
    }

    /// Writes `bytes` in pieces of the given sizes (the last repeats), pausing between them.
    async fn send_in_pieces(
        mut client: TcpStream,
        bytes: Vec<u8>,
        sizes: &[usize],
        pause: Duration,
    ) -> TcpStream {
        let mut rest = &bytes[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
            client.write_all(&rest[..n]).await.unwrap();
            client.flush().await.unwrap();
            rest = &rest[n..];
            i += 1;
            if !rest.is_empty() {
                tokio::time::sleep(pause).await;
            }
        }
        client
    }

    /// Sends `header` + a ClientHello in pieces; the reader must return `expected` and leave the
    /// ClientHello whole in the socket.
    async fn read_over_tcp(header: Vec<u8>, sizes: &'static [usize], pause: Duration, expected: Source) {
        for peek_first in [false, true] {
            let (client, mut server) = tcp_pair().await;
            let mut bytes = header.clone();
            bytes.extend_from_slice(CLIENT_HELLO);
            let writer = tokio::spawn(async move { send_in_pieces(client, bytes, sizes, pause).await });
            let reading = read_either(&mut server, peek_first);
            let source = tokio::time::timeout(Duration::from_secs(10), reading)
                .await
                .expect("reading the header timed out")
                .expect("reading the header failed");
            assert_eq!(source, expected, "peek first: {peek_first}");
            let mut rest = vec![0; CLIENT_HELLO.len()];
            tokio::time::timeout(Duration::from_secs(10), server.read_exact(&mut rest))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rest, CLIENT_HELLO, "the bytes after the header");
            drop(writer.await.unwrap());
        }
    }

    fn headers() -> Vec<(Vec<u8>, Source)> {
        let src4 = addr("192.0.2.7:51234");
        let src6 = addr("[2001:db8::7]:51234");
        let mut tlvs = tlv(0x01, b"h2");
        tlvs.extend(tlv(0x05, &[9; 128]));
        vec![
            (v1(src4, addr("198.51.100.1:443")), Source::Address(src4)),
            (v1(src6, addr("[2001:db8::1]:443")), Source::Address(src6)),
            (b"PROXY UNKNOWN\r\n".to_vec(), Source::Unknown),
            (
                v2_proxy(src4, addr("198.51.100.1:443"), &[]),
                Source::Address(src4),
            ),
            (
                v2_proxy(src6, addr("[2001:db8::1]:443"), &tlvs),
                Source::Address(src6),
            ),
            (v2(0x20, 0x00, &[]), Source::Local),
        ]
    }

    #[tokio::test]
    async fn reads_exactly_the_header_sent_at_once() {
        for (header, source) in headers() {
            read_over_tcp(header, &[usize::MAX], Duration::ZERO, source).await;
        }
    }

    #[tokio::test]
    async fn reads_exactly_the_header_sent_in_pieces() {
        for (header, source) in headers() {
            read_over_tcp(header.clone(), &[3, 10, 7], Duration::from_millis(5), source).await;
            read_over_tcp(header, &[20, 1], Duration::from_millis(2), source).await;
        }
    }

    #[tokio::test]
    async fn reads_exactly_a_header_longer_than_the_first_peek() {
        let src = addr("192.0.2.7:51234");
        let header = v2_proxy(src, addr("198.51.100.1:443"), &tlv(0x04, &[0; 1000]));
        let source = Source::Address(src);
        read_over_tcp(header.clone(), &[usize::MAX], Duration::ZERO, source).await;
        read_over_tcp(header, &[100, usize::MAX], Duration::from_millis(5), source).await;
    }

    #[tokio::test]
    async fn reads_exactly_the_header_sent_a_byte_at_a_time() {
        for (header, source) in headers() {
            read_over_tcp(header, &[1], Duration::from_millis(1), source).await;
        }
    }

    /// Both readers, on a TCP stream.
    async fn read_either(server: &mut TcpStream, peek_first: bool) -> Result<Source, ReadError> {
        if peek_first {
            read_header_tcp(server).await
        } else {
            read_header(server).await
        }
    }

    #[tokio::test]
    async fn an_unfinished_header_is_left_to_the_callers_deadline() {
        for partial in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 5"[..],
            &V2_SIGNATURE[..7],
            &v2(0x21, 0x11, &[0; 12])[..20],
        ] {
            for peek_first in [false, true] {
                let (mut client, mut server) = tcp_pair().await;
                client.write_all(partial).await.unwrap();
                let reading = read_either(&mut server, peek_first);
                let outcome = tokio::time::timeout(Duration::from_millis(100), reading).await;
                assert!(outcome.is_err(), "{outcome:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_peer_that_closes_mid_header() {
        for peek_first in [false, true] {
            let (mut client, mut server) = tcp_pair().await;
            client.write_all(b"PROXY TCP4 192.0.2.7").await.unwrap();
            drop(client);
            let e = read_either(&mut server, peek_first).await.unwrap_err();
            assert!(matches!(e, ReadError::Closed { received: 20 }), "{e:?}");
            let (client, mut server) = tcp_pair().await;
            drop(client);
            let e = read_either(&mut server, peek_first).await.unwrap_err();
            assert!(matches!(e, ReadError::Closed { received: 0 }), "{e:?}");
        }
    }

    #[tokio::test]
    async fn a_listed_balancer_that_sends_no_header() {
        for peek_first in [false, true] {
            let (mut client, mut server) = tcp_pair().await;
            client.write_all(CLIENT_HELLO).await.unwrap();
            let e = read_either(&mut server, peek_first).await.unwrap_err();
            assert!(matches!(e, ReadError::Header(ProxyError::BadSignature)), "{e:?}");
        }
    }

    #[tokio::test]
    async fn an_oversized_v2_header_is_refused_after_16_bytes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut h = v2(0x21, 0x11, &[0; 12]);
        h[14..16].copy_from_slice(&5000u16.to_be_bytes());
        h.extend_from_slice(b"left alone");
        client.write_all(&h).await.unwrap();
        let e = read_header(&mut server).await.unwrap_err();
        assert!(
            matches!(e, ReadError::Header(ProxyError::V2TooLong(5016))),
            "{e:?}"
        );
        // Nothing past the fixed part was read.
        let mut rest = vec![0; h.len() - 16];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, h[16..]);
    }

    #[tokio::test]
    async fn the_shortest_v1_header_is_not_over_read() {
        // Reading 16 bytes first would take the ClientHello's first byte.
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(b"PROXY UNKNOWN\r\n\x16").await.unwrap();
        assert_eq!(read_header(&mut server).await.unwrap(), Source::Unknown);
        assert_eq!(server.read_u8().await.unwrap(), 0x16);
    }

    /// Counts the reads that reach the stream.
    struct CountReads<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for CountReads<R> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.reads += 1;
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn reads_per_header_sent_at_once() {
        let src4 = addr("203.0.113.7:51234");
        let src6 = addr("[2001:db8:85a3::8a2e:370:7334]:51234");
        let cases = [
            // 15 (the shortest header of either version), the 16th byte, then the rest.
            (v2_proxy(src4, addr("10.0.0.5:443"), &tlv(0x05, &[1; 64])), 3),
            (v2(0x20, 0x00, &[]), 2),
            (b"PROXY UNKNOWN\r\n".to_vec(), 1),
            // 15, then 32, then 2 bytes at a time up to 44.
            (v1(src4, addr("10.0.0.5:443")), 8),
            (v1(src6, addr("[2001:db8::1]:443")), 23),
        ];
        for (header, expected) in cases {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            client.write_all(&header).await.unwrap();
            client.write_all(CLIENT_HELLO).await.unwrap();
            let mut counted = CountReads {
                inner: server,
                reads: 0,
            };
            read_header(&mut counted).await.unwrap();
            assert_eq!(counted.reads, expected, "{:?}", String::from_utf8_lossy(&header));
        }
    }

    // ---- the peek for peers that are not listed ----

    async fn verdict(first: &[u8], later: Option<&[u8]>) -> bool {
        let (mut client, server) = tcp_pair().await;
        client.write_all(first).await.unwrap();
        let later = later.map(<[u8]>::to_vec);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            match later {
                Some(bytes) => client.write_all(&bytes).await.unwrap(),
                None => drop(client),
            }
        });
        let answer = tokio::time::timeout(Duration::from_secs(10), starts_with_proxy_signature(&server))
            .await
            .expect("starts_with_proxy_signature timed out")
            .unwrap();
        writer.await.unwrap();
        answer
    }

    #[tokio::test]
    async fn signature_seen_at_once() {
        assert!(verdict(b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n\x16", None).await);
        assert!(verdict(b"PROXY ", None).await);
        assert!(verdict(&v2(0x20, 0x00, &[]), None).await);
        assert!(verdict(&V2_SIGNATURE, None).await);
        assert!(!verdict(CLIENT_HELLO, None).await);
        assert!(!verdict(b"POST /log HTTP/1.1\r\n", None).await);
        assert!(!verdict(b"PROPFIND", None).await);
        assert!(!verdict(b"\r\n\r\n\r\n", None).await);
    }

    #[tokio::test]
    async fn a_tls_client_is_not_delayed() {
        // One byte, and the client waits for an answer that never comes: decided on that byte.
        let (mut client, server) = tcp_pair().await;
        client.write_all(&[0x16]).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(1), starts_with_proxy_signature(&server)).await;
        assert!(!answer.expect("waited for more than the first byte").unwrap());
    }

    #[tokio::test]
    async fn a_partial_signature_is_waited_for() {
        assert!(verdict(b"PRO", Some(b"XY TCP4 ")).await);
        assert!(!verdict(b"PRO", Some(b"PFIND / HTTP/1.1\r\n")).await);
        assert!(verdict(b"\r\n\r\n\0", Some(&V2_SIGNATURE[5..])).await);
        assert!(!verdict(b"\r\n\r\n\0", Some(b"\r\n")).await);
        assert!(!verdict(b"PROX", None).await);
        // Closed straight after the partial signature, before the first peek.
        let (mut client, server) = tcp_pair().await;
        client.write_all(b"\r\n\r").await.unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!starts_with_proxy_signature(&server).await.unwrap());
    }

    #[tokio::test]
    async fn the_peek_consumes_nothing() {
        let (mut client, mut server) = tcp_pair().await;
        let header = v1(addr("192.0.2.7:1"), addr("198.51.100.1:443"));
        client.write_all(&header[..3]).await.unwrap();
        let rest = header[3..].to_vec();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&rest).await.unwrap();
            client.write_all(CLIENT_HELLO).await.unwrap();
            client
        });
        assert!(starts_with_proxy_signature(&server).await.unwrap());
        // After the slow path, the stream still reads normally from its first byte.
        assert_eq!(
            read_header(&mut server).await.unwrap(),
            Source::Address(addr("192.0.2.7:1"))
        );
        assert_eq!(server.read_u8().await.unwrap(), 0x16);
        drop(writer.await.unwrap());
    }

    /// CPU time of this thread (user + system), in clock ticks, from /proc.
    #[cfg(target_os = "linux")]
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn waiting_on_a_partial_signature_does_not_spin() {
        let (mut client, server) = tcp_pair().await;
        client.write_all(b"PROX").await.unwrap();
        let before = thread_cpu_ticks();
        let outcome =
            tokio::time::timeout(Duration::from_millis(500), starts_with_proxy_signature(&server)).await;
        let used = thread_cpu_ticks() - before;
        assert!(outcome.is_err(), "{outcome:?}");
        // A busy loop would use about 50 ticks of 10 ms in 500 ms.
        assert!(used < 10, "{used} ticks of CPU while waiting");
        drop(client);
    }
}
