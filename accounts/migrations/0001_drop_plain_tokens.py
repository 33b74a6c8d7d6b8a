"""The API's tokens used to be rest_framework.authtoken's, kept in plain text: drop that table and its history.

Its app is no longer installed, so its own migrations cannot remove it. The hashed tokens that replace them are
django-rest-knox's (``knox_authtoken``); every client asks for a new token once.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = []

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL("DELETE FROM django_migrations WHERE app = 'authtoken'", reverse_sql=migrations.RunSQL.noop),
    ]
