//! The built provider binary, launched the way Terraform launches it: magic cookie,
//! protocol versions and a fresh self-signed ECDSA P-521 client certificate (like
//! go-plugin's AutoMTLS). Checks the handshake line, mutual TLS with that certificate,
//! GetProviderSchema, a clean exit on GRPCController/Shutdown, and that any other
//! client certificate is refused.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P521_SHA512,
};
use terraform_provider_postern::protocol::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use terraform_provider_postern::protocol::proto::plugin::Empty;
use terraform_provider_postern::protocol::proto::plugin::grpc_controller_client::GrpcControllerClient;
use terraform_provider_postern::protocol::proto::tfplugin6::get_provider_schema;
use terraform_provider_postern::protocol::proto::tfplugin6::provider_client::ProviderClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const BINARY: &str = env!("CARGO_BIN_EXE_terraform-provider-postern");

/// A client certificate like go-plugin's: self-signed ECDSA P-521 / SHA-512, CA:TRUE,
/// SAN localhost, client and server auth.
struct ClientCert {
    cert_pem: String,
    key_pem: String,
}

impl ClientCert {
    fn generate() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P521_SHA512).expect("P-521 key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "HashiCorp");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.self_signed(&key).expect("self-signed cert");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A provider process and what its handshake line said.
struct Plugin {
    child: Child,
    fields: Vec<String>,
}

impl Plugin {
    fn launch(client_cert_pem: &str) -> Self {
        let mut child = Command::new(BINARY)
            .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "6,5")
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_CLIENT_CERT", client_cert_pem)
            .env("TF_LOG_PROVIDER", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the provider");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the handshake line");
        let fields = line.trim_end().split('|').map(str::to_owned).collect();
        Self { child, fields }
    }

    fn addr(&self) -> &str {
        &self.fields[3]
    }

    fn server_cert_pem(&self) -> String {
        let der = STANDARD_NO_PAD
            .decode(&self.fields[5])
            .expect("certificate in standard base64 without padding");
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    async fn channel(&self, client: &ClientCert) -> Result<Channel, tonic::transport::Error> {
        let tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(self.server_cert_pem()))
            .identity(Identity::from_pem(&client.cert_pem, &client.key_pem));
        Endpoint::from_shared(format!("https://{}", self.addr()))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn terraform_style_launch_serves_schema_and_shuts_down() {
    let client = ClientCert::generate();
    let mut plugin = Plugin::launch(&client.cert_pem);

    assert_eq!(plugin.fields.len(), 6, "handshake line {:?}", plugin.fields);
    assert_eq!(&plugin.fields[..3], ["1", "6", "tcp"]);
    assert!(plugin.addr().starts_with("127.0.0.1:"));
    assert_eq!(plugin.fields[4], "grpc");
    assert!(!plugin.fields[5].contains('='), "no base64 padding");

    let channel = plugin
        .channel(&client)
        .await
        .expect("mutual TLS connection");
    let schema = ProviderClient::new(channel.clone())
        .get_provider_schema(get_provider_schema::Request {})
        .await
        .expect("GetProviderSchema")
        .into_inner();
    let provider = schema
        .provider
        .and_then(|s| s.block)
        .expect("provider schema");
    let names: Vec<&str> = provider
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["api_token", "ca_cert_pem", "endpoint", "rollout_timeout"]
    );
    assert!(
        provider
            .attributes
            .iter()
            .all(|a| !a.description.is_empty())
    );
    assert!(provider.attributes[0].sensitive, "api_token is sensitive");
    assert!(schema.diagnostics.is_empty());
    let capabilities = schema.server_capabilities.expect("server capabilities");
    assert!(capabilities.plan_destroy);
    assert!(
        capabilities.get_provider_schema_optional,
        "Terraform may reuse the schema in the provider's later processes of a run"
    );

    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown");
    let status = plugin.wait(Duration::from_secs(2));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after Shutdown within 2 s: {status:?}\n{}",
        plugin.stderr()
    );
    // stderr carries hclog JSON lines only.
    for line in plugin.stderr().lines() {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        assert!(
            json["@level"].is_string() && json["@timestamp"].is_string(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn another_client_certificate_is_refused() {
    let terraform = ClientCert::generate();
    let intruder = ClientCert::generate();
    let mut plugin = Plugin::launch(&terraform.cert_pem);

    // With TLS 1.3 the refusal may surface at connect or at the first call.
    let refused = match plugin.channel(&intruder).await {
        Err(_) => true,
        Ok(channel) => ProviderClient::new(channel)
            .get_provider_schema(get_provider_schema::Request {})
            .await
            .is_err(),
    };
    assert!(refused, "a client with another certificate must be refused");

    // Terraform's own certificate still works afterwards.
    let channel = plugin.channel(&terraform).await.expect("connect");
    ProviderClient::new(channel.clone())
        .get_provider_schema(get_provider_schema::Request {})
        .await
        .expect("GetProviderSchema");
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown");
    assert!(
        plugin
            .wait(Duration::from_secs(2))
            .is_some_and(|s| s.success())
    );
    assert!(plugin.stderr().contains("refused a TLS client"));
}

#[tokio::test]
async fn plaintext_when_terraform_disables_tls() {
    let mut plugin = Plugin::launch("");
    assert_eq!(
        plugin.fields.len(),
        5,
        "no certificate field: {:?}",
        plugin.fields
    );
    let channel = Endpoint::from_shared(format!("http://{}", plugin.addr()))
        .expect("endpoint")
        .connect()
        .await
        .expect("h2c connection");
    ProviderClient::new(channel.clone())
        .get_provider_schema(get_provider_schema::Request {})
        .await
        .expect("GetProviderSchema");
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown");
    assert!(
        plugin
            .wait(Duration::from_secs(2))
            .is_some_and(|s| s.success())
    );
}

#[tokio::test]
async fn sigint_is_ignored_like_go_plugin() {
    let client = ClientCert::generate();
    let mut plugin = Plugin::launch(&client.cert_pem);
    let pid = plugin.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    assert!(
        plugin.wait(Duration::from_millis(300)).is_none(),
        "the provider must survive SIGINT (Terraform stops it through StopProvider)"
    );
    let channel = plugin.channel(&client).await.expect("still serving");
    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown");
    assert!(
        plugin
            .wait(Duration::from_secs(2))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn run_by_hand_explains_and_exits_1() {
    let output = Command::new(BINARY)
        .env_remove(MAGIC_COOKIE_KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run the provider");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("This binary is a plugin. These are not meant to be executed directly."),
        "{stderr}"
    );
}
