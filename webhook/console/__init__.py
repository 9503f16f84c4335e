"""The operator's console: the admin API and the dashboard, every route under `/admin`.

A sub-app of the web app (`webhook.app` mounts `create_console()` at `/admin`), so the web
app's own modules keep to Shopify's, the PSP's and the buyer's routes and never import this
package. Its rooms:

| module | holds |
|---|---|
| `app` | `create_console()`, the sub-app and its routes |
| `api` | `/admin/sessions`, `/admin/sessions/{id}`, `/admin/replay`, `/admin/shops` |
| `webhooks_api` | `/admin/webhooks...`: Shopify's webhooks, their reports and replay |
| `dashboard` | the pages (`/admin`, `/admin/dashboard/...`) and the login form's handlers |
| `login` | who may see a page: the login cookie, logout, the CSRF and same-origin checks |
| `views`, `shops_page` | what each page shows |
| `html`, `charts` | one layout, tables and forms, every outside value escaped; inline SVG bars |

The admin token itself is checked below it, in `webhook.admin_token`: `/metrics` and the
readiness detail take the same token and spend the same attempt budget.
"""
