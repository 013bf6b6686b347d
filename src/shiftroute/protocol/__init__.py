"""Sans-IO protocol code: parsers take bytes and return values; they never touch sockets or asyncio."""
