//! The gRPC server Terraform talks to: the tfplugin6 `Provider` service (one function
//! per RPC: decode → runtime → encode), go-plugin's `GRPCController` (Shutdown ends the
//! process cleanly) and `GRPCStdio`, and the health service, served over our own TLS
//! accept loop.
//!
//! User problems travel as diagnostics inside OK responses; a gRPC `Status` is kept for
//! a broken protocol (an unknown RPC).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::codec::{self, CodecError};
use super::convert;
use super::handshake::{HandshakeError, HandshakeLine, Launch, ServerIdentity};
use super::proto::health::health_check_response::ServingStatus;
use super::proto::health::health_server::{Health, HealthServer};
use super::proto::health::{HealthCheckRequest, HealthCheckResponse};
use super::proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use super::proto::plugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use super::proto::plugin::{Empty, StdioData};
use super::proto::tfplugin6 as tf;
use super::proto::tfplugin6::provider_server::{Provider as ProviderRpc, ProviderServer};
use crate::framework::{
    Diagnostic, Diagnostics, ExtraAttributes, Kind, Provider, Registry, Runtime, StoredState, Type,
    Value, decode_json,
};

/// Largest gRPC message accepted or sent (terraform-plugin-go's limit; Terraform's own
/// client accepts up to 2 GiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 256 << 20;

/// How long in-flight RPCs get to finish after Shutdown. Terraform kills the process
/// 2 s after asking.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1_000);

/// How long a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the plugin could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The launch environment or TLS set-up is wrong (including: run by hand).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The registered schemas would be refused by Terraform.
    #[error("the provider's schemas are invalid:\n  {}", .0.join("\n  "))]
    InvalidSchema(Vec<String>),
    /// Binding the listener or writing the handshake line failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving gRPC")]
    Transport(#[source] tonic::transport::Error),
}

/// Serves `registry` as a Terraform plugin until Terraform calls Shutdown: checks the
/// launch environment, listens on 127.0.0.1, prints the handshake line on stdout, and
/// serves gRPC (over mutual TLS unless Terraform disabled it).
///
/// SIGINT is ignored, as go-plugin does: Ctrl-C reaches the whole process group, and
/// Terraform cancels through StopProvider instead.
pub async fn serve<P: Provider>(registry: Registry<P>) -> Result<(), ServeError> {
    let launch = Launch::from_env()?;
    let problems = registry.problems();
    if !problems.is_empty() {
        return Err(ServeError::InvalidSchema(problems));
    }
    let runtime = Arc::new(Runtime::new(registry));
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|source| ServeError::Io {
            context: "binding 127.0.0.1",
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        context: "reading the listener address",
        source,
    })?;
    let tls = match launch.client_cert {
        Some(client_cert) => {
            let identity = ServerIdentity::generate()?;
            let config = identity.tls_config(client_cert)?;
            Some((identity.cert, TlsAcceptor::from(Arc::new(config))))
        }
        None => None,
    };
    let line = HandshakeLine {
        addr,
        server_cert: tls.as_ref().map(|(cert, _)| cert.clone()),
    };
    // Before the line: Terraform may be interrupted the moment it has read it.
    ignore_interrupts();
    write_handshake_line(&line)?;
    tracing::info!(%addr, tls = tls.is_some(), "provider listening");

    let shutdown = CancellationToken::new();
    let router = router(runtime, shutdown.clone());
    match tls {
        Some((_, acceptor)) => {
            let incoming = tls_incoming(listener, acceptor, shutdown.clone());
            run(router, incoming, shutdown).await
        }
        None => {
            let incoming = futures::StreamExt::map(TcpListenerStream::new(listener), |accepted| {
                accepted.inspect(|tcp| {
                    let _ = tcp.set_nodelay(true);
                })
            });
            run(router, incoming, shutdown).await
        }
    }
}

/// The gRPC services of a plugin serving `runtime`; cancelling `shutdown` is what the
/// GRPCController/Shutdown RPC does.
pub(crate) fn router<P: Provider>(runtime: Arc<Runtime<P>>, shutdown: CancellationToken) -> Router {
    let provider = ProviderServer::new(ProviderService::new(runtime))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Server::builder()
        .add_service(provider)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(GrpcStdioServer::new(Stdio { shutdown }))
        .add_service(HealthServer::new(HealthService))
}

async fn run<S, IO, E>(
    router: Router,
    incoming: S,
    shutdown: CancellationToken,
) -> Result<(), ServeError>
where
    S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result.map_err(ServeError::Transport)?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::debug!("in-flight requests did not finish in time; exiting anyway"),
    }
    tracing::debug!("provider shut down");
    Ok(())
}

/// Accepts TCP connections and completes each TLS handshake in its own task, so a slow
/// or hostile client holds up nobody; failed handshakes are logged and dropped.
fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>>
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let (tcp, peer_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, a response written in more than one segment waits for
            // Terraform's delayed ACK (40 ms) after each RPC: seconds over hundreds of them.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::warn!(%peer_addr, %error, "TLS handshake failed"),
                    Err(_) => tracing::warn!(%peer_addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn write_handshake_line(line: &HandshakeLine) -> Result<(), ServeError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|source| ServeError::Io {
            context: "writing the handshake line to stdout",
            source,
        })
}

fn ignore_interrupts() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::interrupt()) {
        Ok(mut interrupts) => {
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    tracing::debug!(
                        "ignoring SIGINT; Terraform stops providers through StopProvider"
                    );
                }
            });
        }
        Err(error) => tracing::warn!(%error, "could not ignore SIGINT"),
    }
}

// === impl ProviderService ===

/// The tfplugin6 `Provider` service over a [`Runtime`].
pub struct ProviderService<P: Provider> {
    runtime: Arc<Runtime<P>>,
}

impl<P: Provider> ProviderService<P> {
    /// A service for `runtime`.
    pub fn new(runtime: Arc<Runtime<P>>) -> Self {
        Self { runtime }
    }

    fn value_type(
        &self,
        kind: Kind,
        type_name: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Type> {
        diagnostics.check(self.runtime.value_type(kind, type_name).cloned())
    }
}

/// Decodes a request value; a failure becomes an error diagnostic.
fn decode(
    value: Option<&tf::DynamicValue>,
    ty: &Type,
    diagnostics: &mut Diagnostics,
) -> Option<Value> {
    diagnostics.check(codec::decode(value, ty))
}

/// Encodes a response value; a failure becomes an error diagnostic (and no value).
fn encode(value: &Value, ty: &Type, diagnostics: &mut Diagnostics) -> Option<tf::DynamicValue> {
    diagnostics.check(codec::encode(value, ty))
}

fn encode_state(
    state: Option<&Value>,
    ty: &Type,
    diagnostics: &mut Diagnostics,
) -> Option<tf::DynamicValue> {
    encode(state.unwrap_or(&Value::Null), ty, diagnostics)
}

fn log_outcome(diagnostics: &Diagnostics) {
    tracing::debug!(
        errors = diagnostics.has_errors(),
        diagnostics = diagnostics.len(),
        "handled"
    );
    for d in diagnostics.iter() {
        tracing::trace!(diagnostic = %d, "diagnostic");
    }
}

fn timestamp(at: Option<std::time::SystemTime>) -> Option<prost_types::Timestamp> {
    at.map(prost_types::Timestamp::from)
}

#[tonic::async_trait]
impl<P: Provider> ProviderRpc for ProviderService<P> {
    async fn get_metadata(
        &self,
        _request: Request<tf::get_metadata::Request>,
    ) -> Result<Response<tf::get_metadata::Response>, Status> {
        let registry = self.runtime.registry();
        Ok(Response::new(tf::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: Vec::new(),
            data_sources: registry
                .data_source_schemas()
                .map(|(name, _)| tf::get_metadata::DataSourceMetadata {
                    type_name: name.to_owned(),
                })
                .collect(),
            resources: registry
                .resource_schemas()
                .map(|(name, _)| tf::get_metadata::ResourceMetadata {
                    type_name: name.to_owned(),
                })
                .collect(),
            functions: Vec::new(),
            ephemeral_resources: registry
                .ephemeral_resource_schemas()
                .map(|(name, _)| tf::get_metadata::EphemeralMetadata {
                    type_name: name.to_owned(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<tf::get_provider_schema::Request>,
    ) -> Result<Response<tf::get_provider_schema::Response>, Status> {
        tracing::debug!(rpc = "GetProviderSchema", "handled");
        let registry = self.runtime.registry();
        let schemas = |iter: &mut dyn Iterator<Item = (&str, &crate::framework::Schema)>| {
            iter.map(|(name, schema)| (name.to_owned(), convert::schema(schema)))
                .collect()
        };
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(convert::schema(registry.provider_schema())),
            resource_schemas: schemas(&mut registry.resource_schemas()),
            data_source_schemas: schemas(&mut registry.data_source_schemas()),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(capabilities()),
            functions: Default::default(),
            ephemeral_resource_schemas: schemas(&mut registry.ephemeral_resource_schemas()),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> Result<Response<tf::validate_provider_config::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ValidateProviderConfig");
        let _enter = span.enter();
        let mut diagnostics = Diagnostics::new();
        let ty = self.runtime.provider_type();
        if let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics) {
            diagnostics.extend(self.runtime.validate_provider(&config));
        }
        log_outcome(&diagnostics);
        Ok(Response::new(tf::validate_provider_config::Response {
            diagnostics: convert::diagnostics(&diagnostics),
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<tf::validate_resource_config::Request>,
    ) -> Result<Response<tf::validate_resource_config::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ValidateResourceConfig", tf_resource_type = %req.type_name);
        let _enter = span.enter();
        let mut diagnostics = Diagnostics::new();
        if let Some(ty) = self.value_type(Kind::Resource, &req.type_name, &mut diagnostics)
            && let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics)
        {
            diagnostics.extend(self.runtime.validate_resource(&req.type_name, &config));
        }
        log_outcome(&diagnostics);
        Ok(Response::new(tf::validate_resource_config::Response {
            diagnostics: convert::diagnostics(&diagnostics),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<tf::validate_data_resource_config::Request>,
    ) -> Result<Response<tf::validate_data_resource_config::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ValidateDataResourceConfig", tf_data_source_type = %req.type_name);
        let _enter = span.enter();
        let mut diagnostics = Diagnostics::new();
        if let Some(ty) = self.value_type(Kind::DataSource, &req.type_name, &mut diagnostics)
            && let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics)
        {
            diagnostics.extend(self.runtime.validate_data_source(&req.type_name, &config));
        }
        log_outcome(&diagnostics);
        Ok(Response::new(tf::validate_data_resource_config::Response {
            diagnostics: convert::diagnostics(&diagnostics),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> Result<Response<tf::upgrade_resource_state::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "UpgradeResourceState", tf_resource_type = %req.type_name, version = req.version);
        let _enter = span.enter();
        let mut diagnostics = Diagnostics::new();
        let mut upgraded_state = None;
        let schema = diagnostics.check(self.runtime.resource_schema(&req.type_name));
        if let Some(schema) = schema {
            let ty = schema.value_type();
            let raw = req.raw_state.unwrap_or_default();
            let stored = if raw.json.is_empty() {
                if !raw.flatmap.is_empty() {
                    diagnostics.error(
                        "Unsupported state format",
                        "This state was written by Terraform 0.11 or older (flatmap). \
                         Import the object again instead.",
                    );
                }
                None
            } else if req.version == schema.schema_version() {
                // Same shape: read it exactly, tolerating attributes since removed.
                diagnostics
                    .check(
                        decode_json(&raw.json, &ty, ExtraAttributes::Ignore)
                            .map_err(CodecError::from),
                    )
                    .map(StoredState::Current)
            } else {
                diagnostics
                    .check(
                        serde_json::from_slice(&raw.json)
                            .map_err(|e| Diagnostic::error("Invalid stored state", e.to_string())),
                    )
                    .map(StoredState::Older)
            };
            if let Some(stored) = stored {
                let (value, problems) =
                    self.runtime
                        .upgrade_resource_state(&req.type_name, req.version, stored);
                diagnostics.extend(problems);
                if let Some(value) = value {
                    upgraded_state = encode(&value, &ty, &mut diagnostics);
                }
            }
        }
        log_outcome(&diagnostics);
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: convert::diagnostics(&diagnostics),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<tf::configure_provider::Request>,
    ) -> Result<Response<tf::configure_provider::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ConfigureProvider", terraform_version = %req.terraform_version);
        async {
            let mut diagnostics = Diagnostics::new();
            let ty = self.runtime.provider_type();
            if let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics) {
                diagnostics.extend(self.runtime.configure(req.terraform_version, config).await);
            }
            log_outcome(&diagnostics);
            Ok(Response::new(tf::configure_provider::Response {
                diagnostics: convert::diagnostics(&diagnostics),
            }))
        }
        .instrument(span)
        .await
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> Result<Response<tf::read_resource::Response>, Status> {
        let req = request.into_inner();
        let span =
            tracing::debug_span!("rpc", rpc = "ReadResource", tf_resource_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            let mut new_state = req.current_state.clone();
            let mut private = req.private.clone();
            if let Some(ty) = self.value_type(Kind::Resource, &req.type_name, &mut diagnostics)
                && let Some(state) = decode(req.current_state.as_ref(), &ty, &mut diagnostics)
            {
                let outcome = self
                    .runtime
                    .read_resource(&req.type_name, state, req.private)
                    .await;
                diagnostics.extend(outcome.diagnostics);
                new_state = encode_state(outcome.state.as_ref(), &ty, &mut diagnostics);
                private = outcome.private;
            }
            log_outcome(&diagnostics);
            Ok(Response::new(tf::read_resource::Response {
                new_state,
                diagnostics: convert::diagnostics(&diagnostics),
                private,
                deferred: None,
            }))
        }
        .instrument(span)
        .await
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> Result<Response<tf::plan_resource_change::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "PlanResourceChange", tf_resource_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            let mut response = tf::plan_resource_change::Response {
                planned_state: None,
                requires_replace: Vec::new(),
                planned_private: req.prior_private.clone(),
                diagnostics: Vec::new(),
                legacy_type_system: false,
                deferred: None,
            };
            if let Some(ty) = self.value_type(Kind::Resource, &req.type_name, &mut diagnostics) {
                let prior = decode(req.prior_state.as_ref(), &ty, &mut diagnostics);
                let proposed = decode(req.proposed_new_state.as_ref(), &ty, &mut diagnostics);
                let config = decode(req.config.as_ref(), &ty, &mut diagnostics);
                if let (Some(prior), Some(proposed), Some(config)) = (prior, proposed, config) {
                    let outcome = self
                        .runtime
                        .plan_resource(&req.type_name, prior, proposed, config, req.prior_private)
                        .await;
                    diagnostics.extend(outcome.diagnostics);
                    response.planned_state = encode(&outcome.planned, &ty, &mut diagnostics);
                    response.requires_replace = outcome
                        .requires_replace
                        .iter()
                        .map(convert::attribute_path)
                        .collect();
                    response.planned_private = outcome.private;
                }
            }
            log_outcome(&diagnostics);
            response.diagnostics = convert::diagnostics(&diagnostics);
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Result<Response<tf::apply_resource_change::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ApplyResourceChange", tf_resource_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            // If nothing can be done, Terraform keeps the prior state.
            let mut new_state = req.prior_state.clone();
            let mut private = req.planned_private.clone();
            if let Some(ty) = self.value_type(Kind::Resource, &req.type_name, &mut diagnostics) {
                let prior = decode(req.prior_state.as_ref(), &ty, &mut diagnostics);
                let planned = decode(req.planned_state.as_ref(), &ty, &mut diagnostics);
                let config = decode(req.config.as_ref(), &ty, &mut diagnostics);
                if let (Some(prior), Some(planned), Some(config)) = (prior, planned, config) {
                    let outcome = self
                        .runtime
                        .apply_resource(&req.type_name, prior, planned, config, req.planned_private)
                        .await;
                    diagnostics.extend(outcome.diagnostics);
                    new_state = encode_state(outcome.state.as_ref(), &ty, &mut diagnostics);
                    private = outcome.private;
                }
            }
            log_outcome(&diagnostics);
            Ok(Response::new(tf::apply_resource_change::Response {
                new_state,
                private,
                diagnostics: convert::diagnostics(&diagnostics),
                legacy_type_system: false,
            }))
        }
        .instrument(span)
        .await
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> Result<Response<tf::import_resource_state::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ImportResourceState", tf_resource_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            let mut imported_resources = Vec::new();
            if let Some(ty) = self.value_type(Kind::Resource, &req.type_name, &mut diagnostics) {
                let outcome = self.runtime.import_resource(&req.type_name, &req.id).await;
                diagnostics.extend(outcome.diagnostics);
                if let Some(state) = outcome.state
                    && let Some(state) = encode(&state, &ty, &mut diagnostics)
                {
                    imported_resources.push(tf::import_resource_state::ImportedResource {
                        type_name: req.type_name.clone(),
                        state: Some(state),
                        private: outcome.private,
                    });
                }
            }
            log_outcome(&diagnostics);
            Ok(Response::new(tf::import_resource_state::Response {
                imported_resources,
                diagnostics: convert::diagnostics(&diagnostics),
                deferred: None,
            }))
        }
        .instrument(span)
        .await
    }

    async fn move_resource_state(
        &self,
        request: Request<tf::move_resource_state::Request>,
    ) -> Result<Response<tf::move_resource_state::Response>, Status> {
        let req = request.into_inner();
        let diagnostics: Diagnostics = Diagnostic::error(
            "Moving state between resource types is not supported",
            format!(
                "This provider cannot turn a {} into a {}. Remove the `moved` block, and \
                 import the object as {} instead.",
                req.source_type_name, req.target_type_name, req.target_type_name
            ),
        )
        .into();
        Ok(Response::new(tf::move_resource_state::Response {
            target_state: None,
            diagnostics: convert::diagnostics(&diagnostics),
            target_private: Vec::new(),
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<tf::read_data_source::Request>,
    ) -> Result<Response<tf::read_data_source::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ReadDataSource", tf_data_source_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            let mut state = None;
            if let Some(ty) = self.value_type(Kind::DataSource, &req.type_name, &mut diagnostics)
                && let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics)
            {
                let outcome = self.runtime.read_data_source(&req.type_name, config).await;
                diagnostics.extend(outcome.diagnostics);
                if let Some(value) = outcome.state {
                    state = encode(&value, &ty, &mut diagnostics);
                }
            }
            log_outcome(&diagnostics);
            Ok(Response::new(tf::read_data_source::Response {
                state,
                diagnostics: convert::diagnostics(&diagnostics),
                deferred: None,
            }))
        }
        .instrument(span)
        .await
    }

    async fn validate_ephemeral_resource_config(
        &self,
        request: Request<tf::validate_ephemeral_resource_config::Request>,
    ) -> Result<Response<tf::validate_ephemeral_resource_config::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "ValidateEphemeralResourceConfig", tf_ephemeral_type = %req.type_name);
        let _enter = span.enter();
        let mut diagnostics = Diagnostics::new();
        if let Some(ty) = self.value_type(Kind::EphemeralResource, &req.type_name, &mut diagnostics)
            && let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics)
        {
            diagnostics.extend(self.runtime.validate_ephemeral(&req.type_name, &config));
        }
        log_outcome(&diagnostics);
        Ok(Response::new(
            tf::validate_ephemeral_resource_config::Response {
                diagnostics: convert::diagnostics(&diagnostics),
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        request: Request<tf::open_ephemeral_resource::Request>,
    ) -> Result<Response<tf::open_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "OpenEphemeralResource", tf_ephemeral_type = %req.type_name);
        async {
            let mut diagnostics = Diagnostics::new();
            let mut response = tf::open_ephemeral_resource::Response::default();
            if let Some(ty) =
                self.value_type(Kind::EphemeralResource, &req.type_name, &mut diagnostics)
                && let Some(config) = decode(req.config.as_ref(), &ty, &mut diagnostics)
            {
                let opened = self.runtime.open_ephemeral(&req.type_name, config).await;
                diagnostics.extend(opened.diagnostics);
                if let Some(result) = &opened.result {
                    response.result = encode(result, &ty, &mut diagnostics);
                }
                response.private = opened.private;
                response.renew_at = timestamp(opened.renew_at);
            }
            log_outcome(&diagnostics);
            response.diagnostics = convert::diagnostics(&diagnostics);
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
    }

    async fn renew_ephemeral_resource(
        &self,
        request: Request<tf::renew_ephemeral_resource::Request>,
    ) -> Result<Response<tf::renew_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "RenewEphemeralResource", tf_ephemeral_type = %req.type_name);
        async {
            let renewed = self
                .runtime
                .renew_ephemeral(&req.type_name, req.private)
                .await;
            log_outcome(&renewed.diagnostics);
            Ok(Response::new(tf::renew_ephemeral_resource::Response {
                diagnostics: convert::diagnostics(&renewed.diagnostics),
                renew_at: timestamp(renewed.renew_at),
                private: renewed.private,
            }))
        }
        .instrument(span)
        .await
    }

    async fn close_ephemeral_resource(
        &self,
        request: Request<tf::close_ephemeral_resource::Request>,
    ) -> Result<Response<tf::close_ephemeral_resource::Response>, Status> {
        let req = request.into_inner();
        let span = tracing::debug_span!("rpc", rpc = "CloseEphemeralResource", tf_ephemeral_type = %req.type_name);
        async {
            let diagnostics = self
                .runtime
                .close_ephemeral(&req.type_name, req.private)
                .await;
            log_outcome(&diagnostics);
            Ok(Response::new(tf::close_ephemeral_resource::Response {
                diagnostics: convert::diagnostics(&diagnostics),
            }))
        }
        .instrument(span)
        .await
    }

    async fn get_functions(
        &self,
        _request: Request<tf::get_functions::Request>,
    ) -> Result<Response<tf::get_functions::Response>, Status> {
        Ok(Response::new(tf::get_functions::Response::default()))
    }

    async fn call_function(
        &self,
        request: Request<tf::call_function::Request>,
    ) -> Result<Response<tf::call_function::Response>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(tf::call_function::Response {
            result: None,
            error: Some(tf::FunctionError {
                text: format!("this provider has no function named {name:?}"),
                function_argument: None,
            }),
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<tf::stop_provider::Request>,
    ) -> Result<Response<tf::stop_provider::Response>, Status> {
        tracing::info!("stop requested");
        self.runtime.stop();
        Ok(Response::new(tf::stop_provider::Response::default()))
    }
}

/// What this provider tells Terraform it can do. `get_provider_schema_optional`: every call is
/// served from the registry the process starts with, so Terraform may reuse the schema it got
/// from the first of a run's provider processes (it starts three for a `plan`) instead of
/// asking each one again.
fn capabilities() -> tf::ServerCapabilities {
    tf::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: false,
    }
}

// === impl Controller ===

/// go-plugin's GRPCController: Shutdown stops the server, and the process exits.
struct Controller {
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("shutdown requested");
        self.shutdown.cancel();
        Ok(Response::new(Empty {}))
    }
}

// === impl Stdio ===

/// go-plugin's GRPCStdio: a stream that sends nothing and ends at shutdown.
struct Stdio {
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<tonic::codegen::BoxStream<StdioData>>, Status> {
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::once(async move { shutdown.cancelled_owned().await })
            .filter_map(|()| async { None::<Result<StdioData, Status>> });
        Ok(Response::new(Box::pin(stream)))
    }
}

// === impl HealthService ===

/// grpc.health.v1: the `plugin` service (and the server as a whole) is serving.
struct HealthService;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match request.into_inner().service.as_str() {
            "" | "plugin" => Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving.into(),
            })),
            other => Err(Status::not_found(format!("unknown service {other:?}"))),
        }
    }
}
