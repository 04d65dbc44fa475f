# Tribune policies and enclaves as code. With `tribune dev` running:
#
#   export TRIBUNE_ENDPOINT=127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403
#   export TRIBUNE_CA=… TRIBUNE_CERT=… TRIBUNE_KEY=…   # `tribune dev` prints them
#   export TF_CLI_CONFIG_FILE=$PWD/terraformrc.example   # after editing the path in it
#   terraform plan && terraform apply
#
# See terraform-provider/docs/index.md.

terraform {
  required_providers {
    tribune = { source = "tribune/tribune" }
  }
}

# Endpoints, CA and client certificate come from the TRIBUNE_* variables.
provider "tribune" {}

resource "tribune_policy" "acme_batch" {
  name   = "acme-batch"
  source = file("${path.module}/../policies/acme-batch.tribune")
}

# An enclave record. `host` places it (an input until the scheduler exists); the host's agent
# starts it only if the host's own launch allow-list lets this spec through (`tribune dev`'s
# hosts allow only the demo's scripts: there the agent refuses it and says why in
# `tribune enclave status acme-worker`). Destroying it stops it first, then deletes the record.
resource "tribune_enclave" "acme_worker" {
  id     = "acme-worker"
  tenant = "acme"
  tee    = "sim"
  labels = { tier = "batch" }
  requested = {
    cpu_millicores = 250
    memory_bytes   = 268435456
  }
  host   = "h1"
  launch = jsonencode({ process = { cmd = ["/bin/sleep", "3600"] } })
}

data "tribune_cluster" "this" {}
data "tribune_hosts" "all" {}

output "leader" { value = data.tribune_cluster.this.leader }
output "hosts" { value = [for h in data.tribune_hosts.all.hosts : h.id] }
output "acme_batch_version" { value = tribune_policy.acme_batch.version }
output "acme_worker_state" { value = tribune_enclave.acme_worker.state }
