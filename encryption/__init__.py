"""Customer data encrypted before it reaches Temporal: the key ring (`keys`), the AES-256-GCM payload
codec (`codec`) and the data converter every Temporal client and worker of the project uses
(`converter`). The codec server of the HTTP API (api/routes/codec.py) decodes with the same codec."""
