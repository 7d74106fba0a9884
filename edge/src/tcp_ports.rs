//! The public ports of TCP services: the `--tcp-ports` range the API picks a service's port
//! from, and with `--tcp-ports 0` the sockets bound on a port the system picked, kept here from
//! the moment the API chose the port until the service's listeners take them.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// Where the ports of TCP services come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortMode {
    /// No `--tcp-ports`: the edge serves no TCP services.
    Off,
    /// `--tcp-ports LOW-HIGH` (or one port): the lowest free port of the range, or the one a
    /// service asks for inside it.
    Range(u16, u16),
    /// `--tcp-ports 0`: a port the system picks for each service (one edge node only), or
    /// the one a service asks for.
    System,
}

impl PortMode {
    /// The mode `--tcp-ports` says: `None` is off, `(0, 0)` the system's pick.
    pub(crate) fn from_flag(range: Option<(u16, u16)>) -> Self {
        match range {
            None => PortMode::Off,
            Some((0, _)) => PortMode::System,
            Some((low, high)) => PortMode::Range(low, high),
        }
    }
}

/// Why no port could be given to a service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PortError {
    /// The edge has no `--tcp-ports`.
    #[error("this edge serves no TCP services: start it with --tcp-ports LOW-HIGH")]
    Off,
    /// The port asked for lies outside the range.
    #[error("port {port} is outside this edge's --tcp-ports range {low}-{high}")]
    OutOfRange {
        /// The port asked for.
        port: u16,
        /// The range's first port.
        low: u16,
        /// Its last port.
        high: u16,
    },
    /// Another service holds the port.
    #[error("port {port} is already another TCP service's")]
    Taken {
        /// The port asked for.
        port: u16,
    },
    /// Every port of the range is taken.
    #[error("every port of this edge's --tcp-ports range {low}-{high} is taken")]
    Exhausted {
        /// The range's first port.
        low: u16,
        /// Its last port.
        high: u16,
    },
    /// The port cannot be bound on this host.
    #[error("cannot listen on {address}")]
    Bind {
        /// Where.
        address: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The ports of TCP services on this edge node.
#[derive(Debug)]
pub(crate) struct TcpPorts {
    address: IpAddr,
    mode: PortMode,
    workers: usize,
    /// Sockets bound for a chosen port, one per worker, until the listeners take them.
    reserved: Mutex<HashMap<u16, Vec<std::net::TcpListener>>>,
}

impl TcpPorts {
    /// Ports on `address` (`--tcp-address`) as `mode` says, one socket per worker.
    pub(crate) fn new(address: IpAddr, mode: PortMode, workers: usize) -> Self {
        Self {
            address,
            mode,
            workers: workers.max(1),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// The public `address:port` of a service on `port`.
    pub(crate) fn listen(&self, port: u16) -> String {
        SocketAddr::new(self.address, port).to_string()
    }

    /// The port for a service: `wanted` if it may have it, else the lowest free one of the
    /// range (or one the system picks). `taken` are the ports of the other services. With
    /// [`PortMode::System`] the port is bound here already; [`TcpPorts::release`] it when
    /// the service is not stored after all.
    pub(crate) fn choose(
        &self,
        wanted: Option<u16>,
        taken: &BTreeSet<u16>,
    ) -> Result<u16, PortError> {
        if let Some(port) = wanted
            && taken.contains(&port)
        {
            return Err(PortError::Taken { port });
        }
        match self.mode {
            PortMode::Off => Err(PortError::Off),
            PortMode::Range(low, high) => match wanted {
                Some(port) if (low..=high).contains(&port) => Ok(port),
                Some(port) => Err(PortError::OutOfRange { port, low, high }),
                None => (low..=high)
                    .find(|port| !taken.contains(port))
                    .ok_or(PortError::Exhausted { low, high }),
            },
            PortMode::System => {
                let port = wanted.unwrap_or(0);
                let address = SocketAddr::new(self.address, port);
                let listeners = postern_workers::bind_shared(address, self.workers)
                    .map_err(|source| PortError::Bind { address, source })?;
                let bound = listeners
                    .first()
                    .map(std::net::TcpListener::local_addr)
                    .transpose()
                    .map_err(|source| PortError::Bind { address, source })?
                    .map_or(port, |a| a.port());
                self.lock().insert(bound, listeners);
                Ok(bound)
            }
        }
    }

    /// Forgets the sockets bound for `port` by [`TcpPorts::choose`] (the service was not
    /// stored, or moved to another port).
    pub(crate) fn release(&self, port: u16) {
        self.lock().remove(&port);
    }

    /// The sockets of `port`, one per worker: the ones bound when the port was chosen, else
    /// bound now.
    pub(crate) fn bind(&self, port: u16) -> Result<Vec<std::net::TcpListener>, PortError> {
        if let Some(listeners) = self.lock().remove(&port) {
            return Ok(listeners);
        }
        let address = SocketAddr::new(self.address, port);
        postern_workers::bind_shared(address, self.workers)
            .map_err(|source| PortError::Bind { address, source })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Vec<std::net::TcpListener>>> {
        self.reserved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(ports: &[u16]) -> BTreeSet<u16> {
        ports.iter().copied().collect()
    }

    #[test]
    fn a_range_gives_its_lowest_free_port_or_the_one_asked_for() {
        let ports = TcpPorts::new([127, 0, 0, 1].into(), PortMode::Range(4000, 4002), 1);
        assert_eq!(ports.choose(None, &taken(&[])).ok(), Some(4000));
        assert_eq!(ports.choose(None, &taken(&[4000])).ok(), Some(4001));
        assert_eq!(ports.choose(Some(4002), &taken(&[4000])).ok(), Some(4002));
        assert!(matches!(
            ports.choose(Some(4000), &taken(&[4000])),
            Err(PortError::Taken { port: 4000 })
        ));
        assert!(matches!(
            ports.choose(Some(22), &taken(&[])),
            Err(PortError::OutOfRange { port: 22, .. })
        ));
        assert!(matches!(
            ports.choose(None, &taken(&[4000, 4001, 4002])),
            Err(PortError::Exhausted { .. })
        ));
        assert_eq!(ports.listen(4001), "127.0.0.1:4001");
    }

    #[test]
    fn without_a_range_no_port_is_given() {
        let ports = TcpPorts::new([127, 0, 0, 1].into(), PortMode::from_flag(None), 1);
        assert!(matches!(
            ports.choose(None, &taken(&[])),
            Err(PortError::Off)
        ));
    }

    #[test]
    fn the_system_picks_a_port_and_its_sockets_wait_for_the_listeners() {
        let ports = TcpPorts::new([127, 0, 0, 1].into(), PortMode::from_flag(Some((0, 0))), 2);
        let port = ports.choose(None, &taken(&[])).expect("a port");
        assert_ne!(port, 0);
        let listeners = ports.bind(port).expect("the reserved sockets");
        assert_eq!(listeners.len(), 2);
        for listener in &listeners {
            assert_eq!(listener.local_addr().map(|a| a.port()).ok(), Some(port));
        }
    }
}
