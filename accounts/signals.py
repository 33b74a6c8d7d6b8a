"""Receivers: a changed password revokes the user's API tokens.

Every way of changing a password (the password-change page, the admin's form, ``manage.py changepassword``,
``user.set_password(...); user.save()`` in a shell) ends in a save of the user, so that save is the one place that
sees them all. Sessions need nothing here: Django already drops a session whose password hash no longer matches.
Registered in ``AccountsConfig.ready``.
"""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from .services import tokens_revoke

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="accounts.note_password_change")
def note_password_change(sender, instance, update_fields=None, **kwargs):
    instance._accounts_password_changed = False
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    if instance._password is None and update_fields is not None and set(update_fields) == {"password"}:
        # check_password() re-hashing the same password with a newer hasher (after a Django upgrade, say) saves
        # like this, with the raw password already forgotten: not a change of password.
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._accounts_password_changed = stored is not None and stored != instance.password


@receiver(post_save, sender=User, dispatch_uid="accounts.revoke_tokens_on_password_change")
def revoke_tokens_on_password_change(sender, instance, created, **kwargs):
    if getattr(instance, "_accounts_password_changed", False):
        tokens_revoke(user=instance)
        instance._accounts_password_changed = False
