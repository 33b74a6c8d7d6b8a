from django.core.management.base import BaseCommand

from generation.services.taxonomy import taxonomy_load


class Command(BaseCommand):
    help = "Load the EmoPsy taxonomy (8 emotion categories, 35 sub-emotions). Running it again changes nothing."

    def handle(self, *args, **options):
        categories, sub_emotions = taxonomy_load()
        self.stdout.write(f"Taxonomy loaded: {categories} categories and {sub_emotions} sub-emotions created.")
