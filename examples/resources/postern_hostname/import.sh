# A hostname is imported by its name.
terraform import postern_hostname.app app.example.com
