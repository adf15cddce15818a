/** Notifications (issue 5): what the roles, the app and the CLI use of this folder. */
export { createNotifications, channelsFor, NOTIFY_GROUP, DELIVER_GROUP, type Notifications, type NotificationDeps } from './consumers.js';
export { notificationRoutes } from './routes.js';
export { registerMailCommand } from './mail-cli.js';
export { createDevPushSink, type DevPushSink, type PushChannel, type PushRecord } from './push.js';
export { createMailer, createMailboxMailer, createSmtpMailer, EMAIL_JOB_KIND, type EmailMessage, type Mailer } from './email.js';
export { listMailbox, readMail, mailboxDirOf } from './mailbox.js';
export { NOTIFIABLE_EVENT_TYPES, formatMoney, renderNotification, parseMoneyEvent } from './templates.js';
export type { Notification, NotificationChannel, ChannelName } from './notification.js';
