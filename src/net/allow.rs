//! The address allowlist (`--allow`): addresses and CIDR ranges, IPv4 and IPv6, checked on
//! every accepted connection before the TLS handshake.
//!
//! An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4 peers) is
//! matched as its IPv4 address. It only decides; the listener closes and counts.

use std::net::IpAddr;

use crate::correlate::canonical;

/// One allowed address or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`, `::1`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR range"))?;
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
            },
        };
        Ok(Cidr {
            network: mask(ip, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Who may connect: everyone, or the listed ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Empty means anyone.
    ranges: Vec<Cidr>,
}

impl Allowlist {
    /// Parses a comma-separated list; an empty list allows anyone.
    pub fn parse(list: &str) -> Result<Allowlist, String> {
        let ranges = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Allowlist { ranges })
    }

    /// Whether `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|r| r.contains(ip))
    }

    /// True when everyone may connect.
    pub fn is_open(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl std::fmt::Display for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("anyone");
        }
        let parts: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_addresses_and_mapped_peers() {
        let a = Allowlist::parse("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,::1").unwrap();
        assert!(a.allows(ip("10.200.3.4")));
        assert!(
            a.allows(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 matches its IPv4 rule"
        );
        assert!(a.allows(ip("192.0.2.7")));
        assert!(!a.allows(ip("192.0.2.8")));
        assert!(a.allows(ip("2001:db8:1::5")));
        assert!(!a.allows(ip("2001:db9::1")));
        assert!(a.allows(ip("::1")));
        assert!(!a.allows(ip("127.0.0.1")));
        assert_eq!(a.to_string(), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32,::1/128");
        assert!(Allowlist::parse("").unwrap().allows(ip("203.0.113.9")));
        assert!(Allowlist::parse("0.0.0.0/0").unwrap().allows(ip("203.0.113.9")));
        assert!(!Allowlist::parse("0.0.0.0/0").unwrap().allows(ip("::2")));
        assert!(Allowlist::parse("::ffff:10.0.0.0/8").is_ok_and(|a| a.allows(ip("10.9.9.9"))));
        assert!(Allowlist::parse("10.0.0.0/33").is_err());
        assert!(Allowlist::parse("10.0.0/8").is_err());
        assert!(Allowlist::parse("example.com").is_err());
    }
}
