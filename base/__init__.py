"""What servers, clients and the harness all share, importing none of them: protocol
ids and cells, the client TLS context, process lifetime, one clock."""
